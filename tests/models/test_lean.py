"""Leaner RMSNorm / SwiGLU backward (prefloop.models.lean): same numbers, less kept for backward."""

import copy

import pytest
import torch

from prefloop.models.lean import lean_activations, rms_norm, silu_mul


def test_rms_norm_and_silu_mul_gradients_are_exact_in_float64():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: rms_norm(x, w, 1e-6), (x, w))
    a = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(silu_mul, (a, b))


def test_rms_norm_by_hand():
    # x = [3, 4]: mean(x²) = 12.5, r = 1/√12.5 = 0.28284; w = [1, 2] -> y = [0.84853, 2.26274]
    x = torch.tensor([[3.0, 4.0]], requires_grad=True)
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    y = rms_norm(x, w, 0.0)
    assert torch.allclose(y, torch.tensor([[0.848528, 2.262742]]), atol=1e-6)
    # L = y₁: ∂L/∂w = x̂ ⊙ [1, 0] = [0.84853, 0]; ĝ = [1, 0], mean(ĝ ⊙ x̂) = 0.42426,
    # ∂L/∂x = r (ĝ − x̂ · 0.42426) = 0.28284 · ([1, 0] − [0.36, 0.48]) = [0.18102, −0.13576]
    y[0, 0].backward()
    assert torch.allclose(w.grad, torch.tensor([0.848528, 0.0]), atol=1e-6)
    assert torch.allclose(x.grad, torch.tensor([[0.181019, -0.135764]]), atol=1e-6)


@pytest.mark.parametrize("lora", [False, True])
def test_lean_model_matches_the_original_forward_and_backward(lora):
    from prefloop.models.load import apply_lora, load_causal_lm

    torch.manual_seed(0)
    original = load_causal_lm("tiny")
    if lora:
        original = apply_lora(
            original, r=4, alpha=8, dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
        )
    lean = copy.deepcopy(original)
    swapped = lean_activations(lean)
    n_layers = (
        original.config.num_hidden_layers if not lora else original.base_model.model.config.num_hidden_layers
    )
    assert swapped == 3 * n_layers + 1  # two norms and one MLP per layer, and the final norm
    ids = torch.randint(3, 200, (2, 9))
    outs = []
    for model in (original, lean):
        model.train()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        outs.append((loss.detach(), grads))
    (loss_a, grads_a), (loss_b, grads_b) = outs
    assert torch.allclose(loss_a, loss_b, atol=1e-6)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for name in grads_a:
        assert torch.allclose(grads_a[name], grads_b[name], atol=1e-5, rtol=1e-4), name


def test_a_deep_copy_of_a_lean_model_uses_its_own_weights():
    """A live reference is a deep copy of the policy: its swapped forwards must not reach back."""
    from prefloop.models.load import load_causal_lm

    torch.manual_seed(0)
    policy = load_causal_lm("tiny")
    lean_activations(policy)
    reference = copy.deepcopy(policy)
    ids = torch.randint(3, 200, (1, 7))
    with torch.no_grad():
        before = reference(input_ids=ids).logits.clone()
        for name, p in policy.named_parameters():
            if "norm" in name or "mlp" in name:
                p.mul_(1.5)
        after = reference(input_ids=ids).logits
        moved = policy(input_ids=ids).logits
    assert torch.equal(before, after)
    assert not torch.allclose(moved, after)
