"""The digits task, the gold classifier and the tiny DDPM: exact values where there is one."""

import math

import pytest
import torch

from prefloop.image.ddpm import (
    NoisePredictor,
    cosine_schedule,
    denoising_errors,
    noisy,
    pretrain,
    sample,
)
from prefloop.image.digits import (
    DigitGold,
    accuracy,
    as_grid,
    load_digit_images,
    train_classifier,
)
from prefloop.train.schedule import split_eval


@pytest.fixture(scope="module")
def digits():
    return load_digit_images()


def test_digits_load_scaled_rows(digits):
    images, labels = digits
    assert images.shape == (1797, 64) and labels.shape == (1797,)
    # pixel values 0..16 → v/8 − 1: exactly −1 and +1 at the ends
    assert images.min().item() == -1.0 and images.max().item() == 1.0
    assert sorted(labels.unique().tolist()) == list(range(10))
    assert as_grid(images[:3]).shape == (3, 8, 8)


def test_run_split_is_disjoint_and_complete(digits):
    images, _ = digits
    train, held = split_eval(len(images), 0.2, seed=0)  # the split train() uses
    assert not set(train) & set(held)
    assert sorted(train + held) == list(range(len(images)))
    assert len(held) == round(1797 * 0.2)


def test_gold_classifier_and_scores(digits):
    images, labels = digits
    train, held = split_eval(len(images), 0.2, seed=0)
    clf = train_classifier(images[train], labels[train], seed=0)
    assert accuracy(clf, images[held], labels[held]) > 0.9
    gold = DigitGold(clf, target=0)
    scores = gold(images[held])
    assert scores.shape == (len(held),)
    assert ((scores >= 0) & (scores <= 1)).all()
    zeros = labels[held] == 0
    assert scores[zeros].mean() > 0.8 > 0.1 > scores[~zeros].mean()
    assert torch.equal(gold.is_target(images[held]), clf(images[held]).argmax(-1) == 0)
    with pytest.raises(ValueError, match="target digit"):
        DigitGold(clf, target=10)


def test_cosine_schedule_by_hand():
    # T = 2: f(s) = cos²(((s/2 + 0.008)/1.008)·π/2); ᾱ(s) = f(s)/f(0)
    f = [math.cos(((s / 2 + 0.008) / 1.008) * math.pi / 2) ** 2 for s in (0, 1, 2)]
    sch = cosine_schedule(2)
    beta0 = 1 - f[1] / f[0]  # = 1 − ᾱ(1)/ᾱ(0)
    assert sch.betas[0].item() == pytest.approx(beta0, rel=1e-6)
    assert sch.betas[1].item() == pytest.approx(0.999)  # 1 − f(2)/f(1) ≈ 1, clipped at 0.999
    assert sch.alpha_bars[0].item() == pytest.approx(1 - beta0, rel=1e-6)
    assert sch.alpha_bars[1].item() == pytest.approx((1 - beta0) * 0.001, rel=1e-5)
    long = cosine_schedule(100)
    assert (long.alpha_bars[1:] < long.alpha_bars[:-1]).all()  # more noise at every step
    assert long.alpha_bars[0] > 0.999 and long.alpha_bars[-1] < 1e-4


def test_noisy_and_denoising_error_by_hand():
    sch = cosine_schedule(10)
    x0 = torch.tensor([[0.5, -1.0]])
    eps = torch.tensor([[1.0, 2.0]])
    t = torch.tensor([3])
    a = sch.alpha_bars[3].item()
    expected = [math.sqrt(a) * 0.5 + math.sqrt(1 - a) * 1.0, -math.sqrt(a) + math.sqrt(1 - a) * 2.0]
    assert noisy(sch, x0, t, eps)[0].tolist() == pytest.approx(expected, rel=1e-6)

    class Zero(torch.nn.Module):
        def forward(self, x, t):
            return torch.zeros_like(x)

    # ε_θ ≡ 0: the error is mean(ε²) = (1 + 4)/2 = 2.5
    assert denoising_errors(Zero(), sch, x0, t, eps).tolist() == pytest.approx([2.5])


def test_sampler_recovers_the_point_an_oracle_predicts():
    # For data that is one point c, the exact ε-predictor is ε(x_t, t) = (x_t − √ᾱ_t c)/√(1 − ᾱ_t):
    # then x̂₀ = c at every step, and the last step (ᾱ_{−1} = 1, 1 − ᾱ_0 = β_0) returns c exactly.
    sch = cosine_schedule(20)
    c = torch.linspace(-0.9, 0.9, 64)

    class Oracle(torch.nn.Module):
        def forward(self, x, t):
            a = sch.alpha_bars[t][:, None]
            return (x - a.sqrt() * c) / (1 - a).sqrt()

    out = sample(Oracle(), sch, 3, 64, seed=0)
    assert torch.allclose(out, c.expand(3, 64), atol=1e-4)


def test_sampler_is_seeded_and_in_range():
    torch.manual_seed(0)
    model = NoisePredictor(hidden=16, depth=1)
    sch = cosine_schedule(5)
    a = sample(model, sch, 4, 64, seed=3)
    assert torch.equal(a, sample(model, sch, 4, 64, seed=3))
    assert not torch.equal(a, sample(model, sch, 4, 64, seed=4))
    assert a.shape == (4, 64) and a.abs().max() <= 1.0


def test_pretraining_lowers_the_denoising_loss(digits):
    images, _ = digits
    torch.manual_seed(0)
    model = NoisePredictor(hidden=64, depth=1)
    sch = cosine_schedule(10)
    gen = torch.Generator().manual_seed(1)
    t = torch.randint(0, 10, (256,), generator=gen)
    eps = torch.randn(256, 64, generator=gen)

    def fixed_error():
        with torch.no_grad():
            return denoising_errors(model, sch, images[:256], t, eps).mean().item()

    before = fixed_error()
    logged = []
    pretrain(
        model,
        sch,
        images,
        steps=200,
        batch_size=64,
        learning_rate=2e-3,
        seed=0,
        log=lambda s, m: logged.append((s, m)),
        log_every=100,
    )
    assert [s for s, _ in logged] == [100, 200]
    assert not model.training  # pretrain() leaves the model in eval mode
    assert fixed_error() < 0.8 * before
