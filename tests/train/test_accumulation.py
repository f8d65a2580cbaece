"""Gradient accumulation is exact in every loop: one optimizer step over 5 records taken as one
batch, or as uneven micro-batches of 2 + 2 + 1, leaves the same gradient on every weight.

The gradient is read just before the optimizer step (a global step pre-hook), with clipping
off. The data has records of different lengths, rankings of different sizes and an all-tied
ranking, so each micro-batch's share of the step differs from 1 / (number of micro-batches):
scaling a micro-batch's loss by that, or by a wrong count of the rows its loss averages over,
changes the gradient by far more than the tolerance.
"""

from __future__ import annotations

import pytest
import torch

from prefloop.data.records import BinaryFeedback, Demonstration, PreferencePair, RankedResponses

PROMPTS = ["Say hi.", "Name a colour.", "Tell me a joke about cats.", "What is 2 + 2?", "Write one word."]

DEMOS = [
    Demonstration(PROMPTS[0], "Hi!"),
    Demonstration(PROMPTS[1], "Blue, like the sky on a clear summer day."),
    Demonstration(PROMPTS[2], "Why did the cat sit on the computer? To keep an eye on the mouse."),
    Demonstration(PROMPTS[3], "4."),
    Demonstration(PROMPTS[4], "Sunshine"),
]
PAIRS = [
    PreferencePair(PROMPTS[0], "Hi there, nice to meet you!", "No.", margin=2.0),
    PreferencePair(PROMPTS[1], "Blue.", "I do not know any colours at all, sorry.", margin=0.5),
    PreferencePair(PROMPTS[2], "A cat walks into a bar and orders a saucer of milk.", "Cats."),
    PreferencePair(PROMPTS[3], "4", "5", margin=1.0),
    PreferencePair(PROMPTS[4], "Sunshine", "Rain, rain and more rain today.", margin=3.0),
]
RANKINGS = [
    RankedResponses(PROMPTS[0], ["Hello!", "Hi.", "Go away."], [0, 1, 2]),
    RankedResponses(PROMPTS[1], ["Red.", "Green, the colour of grass.", "Blue.", "Grey"], [2, 0, 0, 1]),
    RankedResponses(PROMPTS[2], ["Meow.", "Purr."], [0, 0]),  # all tied: no pair, one PL tie group
    RankedResponses(PROMPTS[3], ["4", "Four.", "22"], [0, 0, 1]),
    RankedResponses(PROMPTS[4], ["Joy", "Meh"], [0, 1]),
]
BINARY = [
    BinaryFeedback(PROMPTS[0], "Hi there!", True),
    BinaryFeedback(PROMPTS[1], "I refuse.", False),
    BinaryFeedback(PROMPTS[2], "A cat joke: meow meow meow.", True),
    BinaryFeedback(PROMPTS[3], "5", False),
    BinaryFeedback(PROMPTS[4], "Sunshine", True),
]


def _step_gradient(loop: str, records, tmp_path, batch_size: int, grad_accum: int, **options):
    """The gradient of the first optimizer step, keyed by parameter name."""
    from prefloop.train import preference, reward_model, sft

    common = dict(
        model="tiny",
        max_steps=1,
        batch_size=batch_size,
        grad_accum=grad_accum,
        max_grad_norm=0.0,
        eval_fraction=0.0,
        save_steps=0,
        report_to_tensorboard="no",
        learning_rate=1e-3,
        output_dir=str(tmp_path / f"{loop}-{batch_size}x{grad_accum}"),
        **options,
    )
    if loop == "sft":
        cfg, train = sft.SFTConfig(**common), sft.train
    elif loop == "reward":
        cfg, train = reward_model.RewardConfig(**common), reward_model.train
    else:
        cfg, train = preference.PreferenceConfig(**common), preference.train
    captured: dict[str, torch.Tensor] = {}

    def capture(optimizer, args, kwargs):
        if captured:
            return
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    captured[str(len(captured))] = p.grad.detach().clone()

    from torch.optim.optimizer import register_optimizer_step_pre_hook

    handle = register_optimizer_step_pre_hook(capture)
    try:
        train(cfg, records=list(records))
    finally:
        handle.remove()
    assert captured, "no gradient reached the optimizer"
    return captured


CASES = {
    "sft": ("sft", DEMOS, {}),
    "reward-pairwise-margin": ("reward", PAIRS, {}),
    "reward-kwise-pairs": ("reward", RANKINGS, {"ranking_kind": "pairwise"}),
    "reward-plackett-luce": ("reward", RANKINGS, {"ranking_kind": "plackett_luce"}),
    "dpo": ("preference", PAIRS, {"loss": "dpo"}),
    "ipo": ("preference", PAIRS, {"loss": "ipo"}),
    "kto": ("preference", BINARY, {"loss": "kto"}),
    "pl-dpo": ("preference", RANKINGS, {"loss": "pl_dpo"}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_accumulated_gradient_equals_one_batch_gradient(case, tmp_path):
    loop, records, options = CASES[case]
    one = _step_gradient(loop, records, tmp_path, batch_size=5, grad_accum=1, **options)
    split = _step_gradient(loop, records, tmp_path, batch_size=2, grad_accum=3, **options)  # 2 + 2 + 1
    assert one.keys() == split.keys()
    a = torch.cat([one[k].flatten() for k in one])
    b = torch.cat([split[k].flatten() for k in one])
    assert a.norm() > 0
    relative = ((a - b).norm() / a.norm()).item()
    assert relative < 1e-4, (
        f"{case}: accumulated gradient differs from the one-batch gradient by {relative:.2e}"
    )
