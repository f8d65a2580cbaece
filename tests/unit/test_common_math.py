"""Hand-checked tests for prefloop.losses.common: masked reductions, whitening, log-probs, KL."""

import math

import pytest
import torch

from prefloop.losses.common import (
    kl_estimate,
    masked_mean,
    masked_sum,
    masked_var,
    plackett_luce_nll,
    sequence_logps,
    token_logps,
    whiten,
)

# --------------------------------------------------------------------------- masked reductions


def test_masked_mean_all_and_per_row():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[1, 1, 0], [0, 0, 1]])
    # all: (1 + 2 + 6) / 3 = 3
    assert masked_mean(x, mask).item() == pytest.approx(3.0)
    # per row: (1 + 2) / 2 = 1.5 ; 6 / 1 = 6
    assert masked_mean(x, mask, dim=1).tolist() == pytest.approx([1.5, 6.0])
    # per column: 1/1, 2/1, 6/1
    assert masked_mean(x, mask, dim=0).tolist() == pytest.approx([1.0, 2.0, 6.0])
    assert masked_sum(x, mask).item() == pytest.approx(9.0)


def test_masked_mean_bool_mask_and_empty_rows():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    mask = torch.tensor([[True, False], [False, False]])
    # an empty row gives 0, not NaN
    assert masked_mean(x, mask, dim=1).tolist() == pytest.approx([1.0, 0.0])
    assert masked_mean(x, torch.zeros_like(mask)).item() == 0.0


def test_masked_mean_ignores_nan_in_masked_slots_and_their_gradient():
    x = torch.tensor([2.0, float("nan"), 4.0], requires_grad=True)
    mask = torch.tensor([1, 0, 1])
    m = masked_mean(x, mask)
    assert m.item() == pytest.approx(3.0)  # (2 + 4) / 2
    m.backward()
    # d mean / d x_i = 1/2 for kept entries, 0 for the masked one (not NaN)
    assert x.grad.tolist() == pytest.approx([0.5, 0.0, 0.5])


def test_masked_mean_broadcasts_mask():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    mask = torch.tensor([1, 0])  # keep column 0 of each row
    # (1 + 3) / 2 = 2
    assert masked_mean(x, mask).item() == pytest.approx(2.0)


def test_masked_var_and_whiten():
    x = torch.tensor([1.0, 2.0, 3.0, 100.0])
    mask = torch.tensor([1, 1, 1, 0])
    # kept values 1, 2, 3: mean 2, squared deviations 1 + 0 + 1 = 2; unbiased var 2/2 = 1
    assert masked_var(x, mask).item() == pytest.approx(1.0)
    assert masked_var(x, mask, unbiased=False).item() == pytest.approx(2.0 / 3.0)
    # whiten: (x − 2) / 1, masked slot set to 0
    assert whiten(x, mask).tolist() == pytest.approx([-1.0, 0.0, 1.0, 0.0], abs=1e-6)
    # shift_mean=False keeps the mean: (x − 2)/1 + 2
    assert whiten(x, mask, shift_mean=False).tolist() == pytest.approx([1.0, 2.0, 3.0, 0.0], abs=1e-6)


def test_masked_mean_bad_shape_is_value_error():
    with pytest.raises(ValueError, match="does not broadcast"):
        masked_mean(torch.zeros(2, 3), torch.ones(4))


# --------------------------------------------------------------------------- log-probs


def _brute_force_seq_logps(logits, input_ids, response_mask, average):
    """Python-float loop: log softmax of the logits at t−1, evaluated at token t."""
    out = []
    b_size, t_size, v_size = logits.shape
    for b in range(b_size):
        total, count = 0.0, 0
        for t in range(1, t_size):
            if not response_mask[b, t]:
                continue
            row = [float(logits[b, t - 1, v]) for v in range(v_size)]
            norm = math.log(sum(math.exp(z) for z in row))
            total += row[int(input_ids[b, t])] - norm
            count += 1
        out.append(total / count if average else total)
    return out


@pytest.mark.parametrize("average", [False, True])
def test_sequence_logps_matches_brute_force(average):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 6, 7, generator=g, dtype=torch.float64) * 3
    input_ids = torch.randint(0, 7, (3, 6), generator=g)
    # row 0: response mask also marks t=0, which must be ignored (nothing predicts token 0)
    response_mask = torch.tensor([[1, 0, 1, 1, 1, 0], [0, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 1]])
    got = sequence_logps(logits, input_ids, response_mask, average=average)
    expected = _brute_force_seq_logps(logits, input_ids, response_mask, average)
    assert got.shape == (3,)
    assert got.tolist() == pytest.approx(expected, rel=1e-10, abs=1e-10)


def test_sequence_logps_float32_gradient_and_bf16():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 5, generator=g, requires_grad=True)
    ids = torch.randint(0, 5, (2, 4), generator=g)
    mask = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])
    out = sequence_logps(logits, ids, mask)
    expected = _brute_force_seq_logps(logits.detach(), ids, mask, False)
    assert out.tolist() == pytest.approx(expected, rel=1e-5)
    out.sum().backward()
    # gradient of log p(label) w.r.t. logits at the predicting position: onehot − softmax;
    # at positions that predict nothing counted (t = 3 is the last, it predicts nothing) it is 0.
    assert torch.all(logits.grad[:, -1] == 0)
    p = logits.detach()[0, 0].softmax(-1)
    onehot = torch.zeros(5)
    onehot[ids[0, 1]] = 1.0
    assert logits.grad[0, 0].tolist() == pytest.approx((onehot - p).tolist(), abs=1e-6)
    # bf16 path agrees to bf16 precision
    logits_bf16 = logits.detach().bfloat16().requires_grad_()
    out_bf16 = sequence_logps(logits_bf16, ids, mask)
    assert out_bf16.dtype == torch.float32
    assert out_bf16.tolist() == pytest.approx(expected, rel=2e-2, abs=2e-2)
    out_bf16.sum().backward()
    assert logits_bf16.grad.dtype == torch.bfloat16
    assert torch.allclose(logits_bf16.grad.float(), logits.grad, atol=2e-2)


@pytest.mark.parametrize("block", [1 << 23, 2 * 6 * 7, 4 * 7, 3])
def test_token_logps_blocks_match_brute_force_and_autograd(monkeypatch, block):
    # block sizes cover: whole batch at once, 2 sequences per block, 4 positions, 1 position
    import prefloop.losses.common as common

    monkeypatch.setattr(common, "_BLOCK_ELEMENTS", block)
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 6, 7, generator=g, dtype=torch.float64, requires_grad=True)
    ids = torch.randint(0, 7, (3, 6), generator=g)
    mask = torch.ones(3, 6, dtype=torch.long)
    got = sequence_logps(logits, ids, mask)
    assert got.tolist() == pytest.approx(_brute_force_seq_logps(logits.detach(), ids, mask, False), rel=1e-10)
    # the hand-written backward agrees with autograd through a plain log-softmax,
    # under uneven upstream weights
    weights = torch.randn(3, 5, generator=g, dtype=torch.float64)
    (token_logps(logits[:, :-1], ids[:, 1:]) * weights).sum().backward()
    ours = logits.grad.clone()
    logits.grad = None
    plain = logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    (plain * weights).sum().backward()
    assert torch.allclose(ours, logits.grad, atol=1e-12)


def test_token_logps_shape_error():
    with pytest.raises(ValueError, match="labels"):
        token_logps(torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.long))


def test_sequence_logps_uniform_logits_by_hand():
    # all-zero logits over V = 4: every token has log-prob log(1/4); 3 response tokens -> 3·log(1/4)
    logits = torch.zeros(1, 5, 4)
    ids = torch.tensor([[0, 1, 2, 3, 0]])
    mask = torch.tensor([[0, 0, 1, 1, 1]])
    assert sequence_logps(logits, ids, mask).item() == pytest.approx(3 * math.log(0.25))
    assert sequence_logps(logits, ids, mask, average=True).item() == pytest.approx(math.log(0.25))


# --------------------------------------------------------------------------- KL estimators


def test_kl_estimators_by_hand():
    # logp = −1, ref_logp = −2: log r = ref − logp = −1, r = e^−1
    logp, ref = torch.tensor([-1.0]), torch.tensor([-2.0])
    assert kl_estimate(logp, ref, "k1").item() == pytest.approx(1.0)  # −log r
    assert kl_estimate(logp, ref, "k2").item() == pytest.approx(0.5)  # ½ (log r)²
    # k3 = (r − 1) − log r = e^−1 − 1 + 1 = e^−1
    assert kl_estimate(logp, ref, "k3").item() == pytest.approx(math.exp(-1.0))
    with pytest.raises(ValueError, match="k1"):
        kl_estimate(logp, ref, "k4")


def test_k1_and_k3_are_unbiased_over_exact_expectation():
    # p = (0.5, 0.3, 0.2) policy, q = (0.2, 0.3, 0.5) reference.
    p = [0.5, 0.3, 0.2]
    q = [0.2, 0.3, 0.5]
    true_kl = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    logp = torch.tensor([math.log(v) for v in p], dtype=torch.float64)
    logq = torch.tensor([math.log(v) for v in q], dtype=torch.float64)
    weights = torch.tensor(p, dtype=torch.float64)
    for kind in ("k1", "k3"):
        expectation = (weights * kl_estimate(logp, logq, kind)).sum().item()
        assert expectation == pytest.approx(true_kl, rel=1e-12)
    # k2 is biased but non-negative; k3 is non-negative per sample
    assert torch.all(kl_estimate(logp, logq, "k3") >= 0)
    assert torch.all(kl_estimate(logp, logq, "k2") >= 0)


# --------------------------------------------------------------------------- Plackett–Luce helper


def test_plackett_luce_nll_masked_invalid_positions_are_finite():
    scores = torch.tensor([[1.0, float("nan"), 0.0], [2.0, 0.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[1, 0, 1], [1, 0, 0]])
    nll = plackett_luce_nll(scores, mask)
    # row 0 uses items 0 and 2 only: −[1 − log(e^1 + e^0)] = log(1 + e^−1)
    assert nll[0].item() == pytest.approx(math.log(1 + math.exp(-1)))
    # row 1 has one valid item: probability 1, loss 0
    assert nll[1].item() == pytest.approx(0.0)
    nll.sum().backward()
    assert torch.isfinite(scores.grad).all()
    assert scores.grad[0, 1].item() == 0.0
