"""Held-out splits never share a prompt with training, for every loop and input kind; KTO's KL
baseline pairs every prompt with a completion of another prompt."""

from __future__ import annotations

import json

import pytest

from prefloop.data.io import write_records
from prefloop.data.records import BinaryFeedback, Demonstration, PreferencePair, RankedResponses
from prefloop.train import preference, reward_model, sft

PROMPTS = [f"Question number {i}?" for i in range(12)]
CHAT = [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": p}] for p in PROMPTS[:4]]


def _inputs() -> dict[str, list]:
    """Raw records of each kind, several per prompt (as rankings, repeated pairs and thumbs give)."""
    prompts = PROMPTS + CHAT
    return {
        "ranked": [RankedResponses(p, ["a", "b", "c", "d"], [0, 1, 2, 3]) for p in prompts],
        "pairwise": [PreferencePair(p, f"good {j}", f"bad {j}") for p in prompts for j in range(3)],
        "binary": [BinaryFeedback(p, f"answer {j}", j % 2 == 0) for p in prompts for j in range(3)],
        "demonstration": [Demonstration(p, f"reply {j}") for p in prompts for j in range(2)],
    }


def _key(prompt) -> str:
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)


def _check_disjoint(train, held_out) -> None:
    assert held_out, "the split held nothing out"
    train_prompts = {_key(r.prompt) for r in train}
    eval_prompts = {_key(r.prompt) for r in held_out}
    assert not train_prompts & eval_prompts, (
        f"{len(train_prompts & eval_prompts)} held-out prompts are trained on"
    )


# (loop, loss or None, input kinds it reads)
LOOPS = [
    ("preference", "dpo", ["pairwise", "ranked"]),
    ("preference", "ipo", ["pairwise", "ranked"]),
    ("preference", "kto", ["binary", "pairwise"]),
    ("preference", "pl_dpo", ["ranked", "pairwise"]),
    ("reward", None, ["pairwise", "ranked"]),
    ("sft", None, ["demonstration", "pairwise", "ranked"]),
]
CASES = [(loop, loss, kind) for loop, loss, kinds in LOOPS for kind in kinds]


@pytest.mark.parametrize("source", ["records", "file"])
@pytest.mark.parametrize("loop,loss,kind", CASES, ids=[f"{a}-{b or ''}-{c}" for a, b, c in CASES])
def test_no_held_out_prompt_is_trained_on(loop, loss, kind, source, tmp_path):
    raw = _inputs()[kind]
    common = dict(eval_fraction=0.25, seed=3, output_dir=str(tmp_path / "out"))
    if source == "file":
        common["data"] = str(write_records(raw, tmp_path / f"{kind}.jsonl"))
    records = raw if source == "records" else None
    if loop == "preference":
        train, held_out = preference.load_records(preference.PreferenceConfig(loss=loss, **common), records)
    elif loop == "reward":
        train, held_out = reward_model.load_records(reward_model.RewardConfig(**common), records)
    else:
        if source == "records":  # the SFT loop takes demonstrations in memory
            records = [Demonstration(r.prompt, getattr(r, "response", "x")) for r in raw]
        train, held_out = sft.load_records(sft.SFTConfig(**common), records)
    _check_disjoint(train, held_out)
    # a quarter of the 16 distinct prompts is held out
    assert len({_key(r.prompt) for r in held_out}) == 4


# --------------------------------------------------------------------------- KTO's mismatched pairs


@pytest.fixture(scope="module")
def tokenizer():
    from prefloop.models.load import load_tokenizer

    return load_tokenizer("tiny")


def _kl_pairs(items, records, pool, tokenizer, cfg):
    """(record index, index in pool of the completion its KL sequence carries)."""
    from prefloop.data.tokenize import encode

    found = []
    for i, item in enumerate(items):
        matches = [
            j
            for j, other in enumerate(pool)
            if encode(
                tokenizer, records[i].prompt, other.completion, cfg.max_length, cfg.max_prompt_length
            ).input_ids
            == item["kl_seq"].input_ids
        ]
        assert matches, f"record {i}: its KL sequence is not its prompt with a completion of the data"
        found.append((i, matches))
    return found


def test_kto_kl_pairs_never_meet_their_own_prompt(tokenizer):
    # Pairs read as binary feedback: chosen and rejected of one prompt sit side by side.
    pairs = [PreferencePair(p, f"yes, {p}", f"no, {p}") for p in PROMPTS[:6]]
    cfg = preference.PreferenceConfig(loss="kto", eval_fraction=0.0)
    records, _ = preference.load_records(cfg, pairs)
    items = preference.tokenize(records, tokenizer, cfg)
    used = []
    for i, matches in _kl_pairs(items, records, records, tokenizer, cfg):
        assert all(records[j].prompt != records[i].prompt for j in matches), (
            f"record {i} meets its own prompt"
        )
        used.append(matches[0])
    assert sorted(used) == list(range(len(records)))  # a derangement: each completion used once


def test_mismatched_partners_by_hand():
    from prefloop.train.preference import mismatched_partners

    # groups a:[0, 1], b:[2], c:[3, 4]; m = 2: order 0 1 2 3 4 -> 2 3 4 0 1
    assert mismatched_partners(["a", "a", "b", "c", "c"]) == [2, 3, 4, 0, 1]
    # one prompt holds 3 of 4 records: the shift cannot avoid it, the next other prompt is taken
    partners = mismatched_partners(["a", "a", "a", "b"])
    prompts = ["a", "a", "a", "b"]
    assert all(prompts[j] != prompts[i] for i, j in enumerate(partners))
    with pytest.raises(preference.TrainError, match="distinct prompt"):
        mismatched_partners(["same", "same"])


def test_held_out_kto_records_borrow_partners_from_training(tokenizer):
    # One held-out prompt alone cannot pair with another prompt; training completions serve.
    cfg = preference.PreferenceConfig(loss="kto")
    train = [BinaryFeedback(p, f"answer to {p}", True) for p in PROMPTS[:3]]
    held_out = [BinaryFeedback(PROMPTS[5], "a", True), BinaryFeedback(PROMPTS[5], "b", False)]
    items = preference.tokenize(held_out, tokenizer, cfg, others=train)
    pool = held_out + train
    for i, matches in _kl_pairs(items, held_out, pool, tokenizer, cfg):
        assert all(pool[j].prompt != held_out[i].prompt for j in matches)
