"""`--reward` specs, composite rewards, checked calls and shaping, on real tiny reward models."""

import math
import shutil
import statistics
import subprocess
import sys
import textwrap

import pytest
import torch

from prefloop.data.tokenize import encode, pad_batch
from prefloop.generation.base import Completion
from prefloop.rewards import (
    LLAMA2_SAFETY_THRESHOLD,
    RewardError,
    RewardShaper,
    RewardShaping,
    RewardSpecError,
    RunningMoments,
    call_reward,
    load_reward,
)

PROMPTS = ["Say something nice.", [{"role": "user", "content": "How are you?"}]]
REPLIES = ["What a lovely day!", "Terrible."]

USER_MODULE = '''
import math

calls = []

def length(prompts, completions):
    return [float(len(c)) for c in completions]

def raises(prompts, completions):
    raise KeyError("no such judge")

def too_few(prompts, completions):
    return [1.0] * (len(completions) - 1)

def with_nan(prompts, completions):
    return [0.0] + [math.nan] * (len(completions) - 1)

def with_inf(prompts, completions):
    return [math.inf for _ in completions]

def not_numbers(prompts, completions):
    return ["good" for _ in completions]

def const(value):
    def f(prompts, completions):
        return [float(value)] * len(completions)
    return f

def table(values):
    """Scores by completion text: a fixed lookup, records the texts it was asked for."""
    def f(prompts, completions):
        calls.append(list(completions))
        return [float(values[c]) for c in completions]
    return f

class Counter:
    def __call__(self, prompts, completions):
        return [float(i) for i in range(len(completions))]
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_rewards.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("user_rewards", None)
    yield tmp_path
    sys.modules.pop("user_rewards", None)


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# --------------------------------------------------------------------------- reward models


def _manual_scores(folder, prompts, replies):
    """Score with plain transformers and the training tokenization, no prefloop reward code.

    A bias-less head (Llama's `score`) keeps the trained offset in `config.reward_bias`.
    """
    from transformers import AutoModelForSequenceClassification

    from prefloop.models.load import load_tokenizer

    tokenizer = load_tokenizer(str(folder))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    seqs = [encode(tokenizer, p, r, 512, 256) for p, r in zip(prompts, replies)]
    out = []
    with torch.no_grad():
        for s in seqs:  # one at a time: no padding at all
            batch = pad_batch([s], tokenizer.pad_token_id)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            out.append(logits[0, 0].item() + float(getattr(model.config, "reward_bias", 0.0) or 0.0))
    return tokenizer, out


def test_reward_model_directory_forms(llama_rm):
    _, want = _manual_scores(llama_rm, PROMPTS, REPLIES)
    for spec in (f"rm:{llama_rm}", f"rm:{llama_rm.parent}", str(llama_rm)):
        reward = load_reward(spec, device="cpu", batch_size=2)
        got = call_reward(reward, PROMPTS, REPLIES)
        assert got == pytest.approx(want, abs=1e-4), spec
    assert len(set(want)) == 2  # the two replies do get different scores


def test_minilm_style_reward_model_with_its_own_tokenizer(bert_rm, llama_rm):
    from prefloop.models.load import load_tokenizer

    tokenizer, want = _manual_scores(bert_rm, PROMPTS, REPLIES)
    policy_tokenizer = load_tokenizer("tiny")
    assert len(tokenizer) != len(policy_tokenizer)  # WordPiece vs the policy's BPE
    reward = load_reward(f"rm:{bert_rm}", device="cpu")
    assert call_reward(reward, PROMPTS, REPLIES) == pytest.approx(want, abs=1e-4)
    # Two different reward models in one weighted sum, each with its own tokenizer.
    both = load_reward(f"0.7*rm:{llama_rm},0.3*rm:{bert_rm}", device="cpu")
    _, llama = _manual_scores(llama_rm, PROMPTS, REPLIES)
    assert call_reward(both, PROMPTS, REPLIES) == pytest.approx(
        [0.7 * a + 0.3 * b for a, b in zip(llama, want)], abs=1e-4
    )


def test_bad_reward_model_directories_are_named(tmp_path, llama_rm):
    with pytest.raises(RewardSpecError, match="does not exist") as e:
        load_reward(f"rm:{tmp_path / 'nope'}")
    assert str(tmp_path / "nope") in str(e.value)
    from prefloop.models.tiny import tiny_model_dir

    causal = tiny_model_dir("causal")
    with pytest.raises(RewardSpecError, match="not a reward model") as e:
        load_reward(f"rm:{causal}")
    assert str(causal) in str(e.value)
    broken = tmp_path / "broken_rm"
    shutil.copytree(llama_rm, broken)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        (broken / name).unlink(missing_ok=True)
    with pytest.raises(RewardError, match="tokenizer") as e:
        load_reward(f"rm:{broken}", device="cpu")
    assert str(broken) in str(e.value) and "\n" not in str(e.value)


# --------------------------------------------------------------------------- gold, callables, sums


def test_gold_and_weighted_sum_by_hand(user_module):
    from prefloop.rewards.gold import SentimentGold

    gold = SentimentGold()(PROMPTS, REPLIES)
    reward = load_reward("0.7*gold:positive_replies, 0.3*user_rewards:length")
    # 0.7·gold + 0.3·len(reply): lengths 18 and 9
    assert call_reward(reward, PROMPTS, REPLIES) == pytest.approx(
        [0.7 * gold[0] + 0.3 * 18, 0.7 * gold[1] + 0.3 * 9]
    )
    assert gold[0] > 0 > gold[1]
    # Weight 1 when omitted; a class is instantiated; a .py file path works too.
    reward = load_reward(f"user_rewards:Counter,-2*{user_module / 'user_rewards.py'}:length")
    assert call_reward(reward, PROMPTS, REPLIES) == pytest.approx([0 - 36, 1 - 18])


@pytest.mark.parametrize(
    "fn, message",
    [
        ("raises", r"reward 'user_rewards:raises' on batch 7: raised KeyError: 'no such judge'"),
        ("too_few", r"reward 'user_rewards:too_few' on batch 7: returned 1 scores for 2 completions"),
        ("with_nan", r"reward 'user_rewards:with_nan' on batch 7: returned nan for completion 1 of 2"),
        (
            "with_inf",
            r"reward 'user_rewards:with_inf' on batch 7: returned inf for completion 0 of 2 \(and 1 more\)",
        ),
        ("not_numbers", r"reward 'user_rewards:not_numbers' on batch 7: expected a list of numbers"),
    ],
)
def test_bad_reward_output_is_one_line_naming_reward_and_batch(user_module, fn, message):
    # Inside a weighted sum, the failing member is the one named.
    reward = load_reward(f"0.5*gold:positive_replies,user_rewards:{fn}")
    with pytest.raises(RewardError, match=f"^{message}") as e:
        call_reward(reward, PROMPTS, REPLIES, batch=7)
    assert "\n" not in str(e.value)


def test_unknown_specs_list_the_accepted_forms(user_module, tmp_path):
    for spec in ("nonsense", "user_rewards:missing", "no_such_module_xyz:f", "gold:unknown"):
        with pytest.raises(RewardSpecError) as e:
            load_reward(spec)
        assert spec in str(e.value)
    with pytest.raises(RewardSpecError, match="accepted --reward forms: rm:DIR"):
        load_reward("nonsense")
    with pytest.raises(RewardSpecError, match="positive_replies"):
        load_reward("gold:unknown")
    with pytest.raises(RewardSpecError, match="does not exist"):
        load_reward(str(tmp_path / "rewards.yaml"))
    with pytest.raises(
        RewardSpecError, match="reward model directory 'runs/no_such_rm/final' does not exist"
    ):
        load_reward("runs/no_such_rm/final")


# --------------------------------------------------------------------------- YAML: ensembles, gating


def test_ensemble_mean_lcb_ucb_by_hand(user_module, tmp_path):
    members = """
        - {reward: "user_rewards:table", args: {values: {a: 1, b: 2}}}
        - {reward: "user_rewards:table", args: {values: {a: 3, b: 2}}}
        - {reward: "user_rewards:table", args: {values: {a: 2, b: 5}}}
    """
    # Column a: 1, 3, 2 → mean 2, sample std sqrt((1 + 1 + 0)/2) = 1
    # Column b: 2, 2, 5 → mean 3, sample std sqrt((1 + 1 + 4)/2) = sqrt(3)
    expected = {
        "mean": [2.0, 3.0],
        "lcb": [2.0 - 2 * 1.0, 3.0 - 2 * math.sqrt(3)],  # k = 2
        "ucb": [2.0 + 2 * 1.0, 3.0 + 2 * math.sqrt(3)],
    }
    for combine, want in expected.items():
        path = _write(
            tmp_path,
            f"{combine}.yaml",
            "ensemble:" + textwrap.indent(textwrap.dedent(members), "  ") + f"combine: {combine}\nk: 2\n",
        )
        reward = load_reward(str(path))
        assert call_reward(reward, ["p", "p"], ["a", "b"]) == pytest.approx(want), combine


def test_safety_gating_by_hand(user_module, tmp_path):
    import user_rewards

    path = _write(
        tmp_path,
        "gate.yaml",
        """
        sum:
          - gate:
              safety: {reward: "user_rewards:table", args: {values: {x: -3.0, y: 0.5, z: 0.5}}}
              helpfulness: {reward: "user_rewards:table", args: {values: {x: 10, y: 20, z: 30}}}
        """,
    )
    reward = load_reward(str(path))
    meta = [{}, {"unsafe": True}, {"unsafe": "false"}]
    # x: safety −3 < logit(0.15) = −1.7346 → safety; y: prompt flagged unsafe → safety 0.5;
    # z: safe prompt, safety 0.5 above the threshold → helpfulness 30.
    user_rewards.calls.clear()
    assert call_reward(reward, ["p"] * 3, ["x", "y", "z"], meta=meta) == [-3.0, 0.5, 30.0]
    assert user_rewards.calls == [["x", "y", "z"], ["z"]]  # helpfulness ran on z only
    assert pytest.approx(-1.734601, abs=1e-6) == LLAMA2_SAFETY_THRESHOLD
    # Without prompt records only the threshold gates; a custom threshold and field name.
    assert call_reward(reward, ["p"] * 3, ["x", "y", "z"]) == [-3.0, 20.0, 30.0]
    custom = _write(
        tmp_path,
        "gate2.yaml",
        """
        gate:
          safety: {reward: "user_rewards:table", args: {values: {x: -3.0, y: 0.5, z: 0.5}}}
          helpfulness: {reward: "user_rewards:table", args: {values: {x: 10, y: 20, z: 30}}}
          threshold: -5
          unsafe_field: harmful
        """,
    )
    assert call_reward(
        load_reward(str(custom)), ["p"] * 3, ["x", "y", "z"], meta=[{}, {}, {"harmful": 1}]
    ) == [
        10.0,
        20.0,
        0.5,
    ]


def test_yaml_errors_name_the_file_and_field(user_module, tmp_path):
    path = _write(tmp_path, "bad.yaml", "sum:\n  - {reward: 'gold:positive_replies', wieght: 2}\n")
    with pytest.raises(RewardSpecError, match=r"bad.yaml.sum\[0\]: unknown key 'wieght'"):
        load_reward(str(path))
    path = _write(tmp_path, "bad2.yaml", "ensemble: ['gold:positive_replies']\n")
    with pytest.raises(RewardSpecError, match="bad2.yaml: an ensemble needs at least 2 members"):
        load_reward(str(path))
    path = _write(tmp_path, "bad3.yaml", "gate: {safety: 'gold:positive_replies'}\n")
    with pytest.raises(RewardSpecError, match=r"bad3.yaml.gate.helpfulness: missing"):
        load_reward(str(path))


# --------------------------------------------------------------------------- shaping


def _completion(n_tokens: int, stopped: bool) -> Completion:
    return Completion("x", list(range(n_tokens)), finish_reason="eos" if stopped else "length")


def test_penalties_and_clipping_by_hand():
    shaper = RewardShaper(
        RewardShaping(missing_eos_penalty=1.0, length_penalty=0.1, length_target=3, clip=2.0)
    )
    completions = [_completion(2, True), _completion(5, False), _completion(4, True)]
    rewards, m = shaper([1.0, 1.0, -2.5], completions)
    # 1 − 0 = 1;  1 − 1 (no eos) − 0.1·(5 − 3) = −0.2;  −2.5 − 0.1·(4 − 3) = −2.6 → clipped to −2
    assert rewards == pytest.approx([1.0, -0.2, -2.0])
    assert m["reward/missing_eos_fraction"] == pytest.approx(1 / 3)
    assert m["reward/clip_fraction"] == pytest.approx(1 / 3)
    assert m["reward/penalty_mean"] == pytest.approx((0 + 1.2 + 0.1) / 3)


def test_running_normalisation_matches_all_rewards_seen_and_resumes_exactly():
    batches = [[1.0, 2.0, 3.0], [10.0, -4.0], [0.5, 0.25, 7.0, 1.0]]
    moments = RunningMoments()
    seen = []
    for b in batches:
        moments.update(b)
        seen += b
        assert moments.mean == pytest.approx(statistics.mean(seen))
        assert moments.var == pytest.approx(statistics.variance(seen))
    cfg = RewardShaping(normalize=True, normalize_eps=0.0)
    shaper = RewardShaper(cfg)
    first, _ = shaper(batches[0], [_completion(1, True)] * 3)
    # After batch 1: mean 2, Bessel variance 1 → (r − 2)/1
    assert first == pytest.approx([-1.0, 0.0, 1.0])
    second, m = shaper(batches[1], [_completion(1, True)] * 2)
    mean, sd = statistics.mean(batches[0] + batches[1]), statistics.stdev(batches[0] + batches[1])
    assert second == pytest.approx([(10 - mean) / sd, (-4 - mean) / sd])
    assert m["reward/running_mean"] == pytest.approx(mean)
    # Resume: a fresh shaper with the saved state gives what the uninterrupted one gives.
    resumed = RewardShaper(cfg)
    resumed.load_state_dict(shaper.state_dict())
    assert resumed(batches[2], [_completion(1, True)] * 4) == shaper(batches[2], [_completion(1, True)] * 4)
    with pytest.raises(ValueError, match="clip"):
        RewardShaping(clip=0.0)


def test_rewards_package_is_torch_free():
    code = "import sys, prefloop.rewards; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
