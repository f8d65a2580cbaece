"""Win rates, length control, best-of-N KL, over-optimization fits and the hacking monitor, by hand."""

import math

import numpy as np
import pytest

from prefloop.eval.stats import (
    RewardHackingMonitor,
    best_of_n_kl,
    bootstrap_interval,
    fit_overoptimization,
    least_squares_slope,
    length_controlled_win_rate,
    outcomes_from_scores,
    win_rate,
)


def test_outcomes_and_win_rate_counts():
    out = outcomes_from_scores([3.0, 1.0, 2.0, 5.0], [1.0, 1.0, 4.0, 0.0])
    assert out == [1.0, 0.5, 0.0, 1.0]
    wr = win_rate(out, n_bootstrap=500)
    # (1 + 0.5 + 0 + 1) / 4 = 0.625
    assert wr.win_rate == pytest.approx(0.625)
    assert (wr.wins, wr.ties, wr.losses, wr.n) == (2, 1, 1, 4)
    assert wr.tie_rate == pytest.approx(0.25)
    assert 0.0 <= wr.ci_low <= wr.win_rate <= wr.ci_high <= 1.0
    with pytest.raises(ValueError, match="outcomes must be"):
        win_rate([0.3])


def test_bootstrap_interval_is_exact_on_a_constant_and_covers_the_binomial_interval():
    assert bootstrap_interval([0.5] * 10) == (0.5, 0.5)
    rng = np.random.default_rng(0)
    x = (rng.random(400) < 0.3).astype(float)
    low, high = bootstrap_interval(x, n_bootstrap=4000, seed=1)
    # Normal approximation: p̂ ± 1.96·sqrt(p̂(1−p̂)/n); the percentile bootstrap agrees to ~0.005.
    p = x.mean()
    half = 1.96 * math.sqrt(p * (1 - p) / x.size)
    assert low == pytest.approx(p - half, abs=0.006)
    assert high == pytest.approx(p + half, abs=0.006)


def test_win_rate_of_a_model_against_itself_contains_one_half():
    rng = np.random.default_rng(3)
    a = rng.normal(size=300)
    b = rng.normal(size=300)  # two samples of the same "model": the judge has no preference
    wr = win_rate(outcomes_from_scores(a, b), n_bootstrap=2000, seed=0)
    assert wr.ci_low < 0.5 < wr.ci_high


def test_length_controlled_win_rate_removes_a_pure_length_preference():
    # The judge prefers the longer answer, nothing else: wins exactly when the policy is longer.
    rng = np.random.default_rng(0)
    lp = rng.integers(10, 200, size=400).astype(float)
    lr = rng.integers(10, 200, size=400).astype(float)
    out = [1.0 if a > b else 0.0 if a < b else 0.5 for a, b in zip(lp, lr)]
    lc, phi = length_controlled_win_rate(out, lp, lr)
    assert phi > 5  # a strong length effect was found
    assert lc == pytest.approx(0.5, abs=0.05)  # at equal length, no preference
    # Without a length effect, the LC win rate equals the logistic fit of the plain win rate:
    # all 3 wins out of 4 at equal lengths → σ(θ) = 3/4 exactly.
    lc2, phi2 = length_controlled_win_rate([1, 1, 1, 0], [5, 5, 5, 5], [5, 5, 5, 5])
    assert lc2 == pytest.approx(0.75, abs=1e-6) and phi2 == pytest.approx(0.0, abs=1e-9)


def test_best_of_n_kl_by_hand():
    assert best_of_n_kl(1) == 0.0
    assert best_of_n_kl(2) == pytest.approx(math.log(2) - 0.5)  # 0.19315
    assert best_of_n_kl(64) == pytest.approx(math.log(64) - 63 / 64)  # 3.1745
    with pytest.raises(ValueError):
        best_of_n_kl(0)


def test_overoptimization_fits_recover_the_generating_forms():
    d = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
    # best-of-N with α = 1, β = 0.25: R = d − 0.25 d²; peak d* = 1/(2·0.25) = 2, R(2) = 2 − 1 = 1.
    fit = fit_overoptimization(d, d * (1.0 - 0.25 * d), "bon")
    assert (fit.alpha, fit.beta) == (pytest.approx(1.0), pytest.approx(0.25))
    assert fit.d_peak == pytest.approx(2.0) and fit.kl_peak == pytest.approx(4.0)
    assert fit.gold_peak == pytest.approx(1.0) and fit.peak_in_range
    # the same curve seen only up to d = 1 (before its peak at 2): the peak is an extrapolation
    assert not fit_overoptimization(d[:3], (d * (1.0 - 0.25 * d))[:3], "bon").peak_in_range
    # still rising faster than linearly (β < 0): no peak at all; reported at the largest d
    rising = fit_overoptimization(d, d * (1.0 + 0.1 * d), "bon")
    assert rising.beta == pytest.approx(-0.1) and rising.d_peak == 3.0 and not rising.peak_in_range
    # RL with α = 1, β = 0.5: R = d(1 − 0.5 log d); d* = exp(1/0.5 − 1) = e, R(e) = e(1 − 0.5) = e/2.
    with np.errstate(divide="ignore", invalid="ignore"):
        gold = np.where(d > 0, d * (1.0 - 0.5 * np.log(np.where(d > 0, d, 1))), 0.0)
    fit = fit_overoptimization(d, gold, "rl")
    assert (fit.alpha, fit.beta) == (pytest.approx(1.0), pytest.approx(0.5))
    assert fit.d_peak == pytest.approx(math.e) and fit.gold_peak == pytest.approx(math.e / 2)
    assert fit.peak_in_range  # e < 3
    assert float(fit.predict(0.0)) == 0.0
    with pytest.raises(ValueError, match="form"):
        fit_overoptimization(d, gold, "linear")


def test_least_squares_slope_by_hand():
    # points (0,1), (1,3), (2,2): x̄ = 1, ȳ = 2, slope = [(−1)(−1) + 0 + (1)(0)] / 2 = 0.5
    assert least_squares_slope([1.0, 3.0, 2.0]) == pytest.approx(0.5)
    assert least_squares_slope([4.0]) == 0.0


def test_hacking_monitor_fires_once_when_proxy_rises_and_gold_falls():
    mon = RewardHackingMonitor(window=3, min_drop_per_eval=0.06)
    assert mon.update(10, 0.1, 0.5) is None
    assert mon.update(20, 0.2, 0.6) is None
    assert mon.update(30, 0.3, 0.7) is None  # both rising: learning, not hacking
    # gold (0.6, 0.7, 0.5): slope [(−1)(0) + 0 + (1)(−0.1)] / 2 = −0.05, a smaller drop than 0.06
    assert mon.update(40, 0.4, 0.5) is None
    warning = mon.update(50, 0.5, 0.3)  # gold (0.7, 0.5, 0.3): slope −0.2 while the proxy rises
    assert warning is not None and "step 50" in warning and "30..50" in warning
    assert mon.update(60, 0.6, 0.1) is None  # still hacking: said once
    assert mon.update(70, 0.5, 0.2) is None  # proxy falls now: re-armed
    state = mon.state_dict()
    again = RewardHackingMonitor(window=3, min_drop_per_eval=0.06)
    again.load_state_dict(state)
    assert again.history == mon.history and again.flagged == mon.flagged
