"""Per-token response log-probs, entropies and the reference model, against full-logit computations."""

import pytest
import torch

from prefloop.models.logps import response_logps, response_token_logps
from prefloop.models.reference import Reference


@pytest.fixture
def tiny():
    from prefloop.models.load import load_causal_lm

    torch.manual_seed(0)
    return load_causal_lm("tiny")


def _batch():
    torch.manual_seed(1)
    ids = torch.randint(0, 1000, (2, 7))
    attn = torch.ones(2, 7, dtype=torch.long)
    attn[1, 6:] = 0
    resp = torch.zeros(2, 7, dtype=torch.long)
    resp[0, 3:] = 1
    resp[1, 4:6] = 1
    return ids, attn, resp


def test_token_logps_and_entropy_equal_full_logits(tiny):
    ids, attn, resp = _batch()
    logits = tiny(input_ids=ids, attention_mask=attn).logits.double()
    logprobs = torch.log_softmax(logits, dim=-1)
    tok, ent = response_token_logps(tiny, ids, attn, resp, chunk_tokens=2, with_entropy=True)
    assert tok.shape == ids.shape and ent.shape == ids.shape
    for b in range(2):
        for t in range(7):
            if resp[b, t]:
                # token t is predicted by the distribution at position t − 1
                expected = logprobs[b, t - 1, ids[b, t]].item()
                expected_ent = -(logprobs[b, t - 1].exp() * logprobs[b, t - 1]).sum().item()
                assert tok[b, t].item() == pytest.approx(expected, abs=1e-4)
                assert ent[b, t].item() == pytest.approx(expected_ent, abs=1e-4)
            else:
                assert tok[b, t].item() == 0.0 and ent[b, t].item() == 0.0
    sums, counts = response_logps(tiny, ids, attn, resp)
    assert counts.tolist() == [4, 2]
    assert torch.allclose(sums, tok.sum(dim=1), atol=1e-5)


def test_entropy_has_a_gradient(tiny):
    ids, attn, resp = _batch()
    _, ent = response_token_logps(tiny, ids, attn, resp, with_entropy=True)
    (grad,) = torch.autograd.grad(ent.sum(), tiny.lm_head.weight)
    assert grad.abs().sum() > 0


def test_reference_copy_is_frozen_while_policy_moves(tiny):
    ids, attn, resp = _batch()
    ref = Reference(tiny, copy_policy=True)
    before = ref.response_logps(ids, attn, resp)
    with torch.no_grad():
        tiny.lm_head.weight.add_(0.5)  # the policy changes
    assert torch.equal(ref.response_logps(ids, attn, resp), before)
    moved, _ = response_logps(tiny, ids, attn, resp)
    assert not torch.allclose(moved, before)
    assert not before.requires_grad


def test_reference_without_copy_is_the_policy_in_eval_mode(tiny):
    ids, attn, resp = _batch()
    tiny.train()
    ref = Reference(tiny)
    tok = ref.response_token_logps(ids, attn, resp)
    with torch.no_grad():
        expected = response_token_logps(tiny.eval(), ids, attn, resp)
    tiny.train()
    assert torch.equal(tok, expected)
    ref.apply(lambda m: None)
    assert tiny.training  # the mode is given back


def test_reference_of_a_lora_policy_is_its_base(tiny):
    from prefloop.models.load import apply_lora

    ids, attn, resp = _batch()
    with torch.no_grad():
        base, _ = response_logps(tiny, ids, attn, resp)
    policy = apply_lora(tiny, r=2, alpha=4, dropout=0.0, target_modules=None, task_type="CAUSAL_LM")
    for name, p in policy.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p)  # make the adapter change the output
    with torch.no_grad():
        adapted, _ = response_logps(policy, ids, attn, resp)
    ref = Reference(policy, lora=True)
    assert not torch.allclose(adapted, base)
    assert torch.allclose(ref.response_logps(ids, attn, resp), base, atol=1e-6)
