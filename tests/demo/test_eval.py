"""Evaluation metrics (gold score, win rate, KL to a reference) and the report files."""

import math

import pytest
import torch

from prefloop.eval.metrics import gold_score, kl_to_reference, mean_and_stderr, sequence_logprobs, win_rate
from prefloop.eval.report import write_report


class LengthGold:
    """Gold = number of characters (easy to reason about by hand)."""

    def __call__(self, prompts, completions):
        return [float(len(c)) for c in completions]


def test_gold_score_mean():
    mean, scores = gold_score(LengthGold(), ["p", "q", "r"], ["a", "bb", "cccccc"])
    assert scores == [1.0, 2.0, 6.0] and mean == 3.0


def test_win_rate_by_hand():
    # after wins on prompt 1, loses on 2, ties on 3 -> (1 + 0 + 0.5) / 3
    assert win_rate(["a", "bbb", "cc"], ["aa", "b", "dd"], LengthGold(), ["1", "2", "3"]) == pytest.approx(
        0.5
    )
    with pytest.raises(ValueError, match="lengths differ"):
        win_rate(["a"], ["a", "b"], LengthGold(), ["1"])


def test_mean_and_stderr_by_hand():
    # values 1, 2, 3: mean 2, sample sd 1, standard error 1 / sqrt(3)
    mean, se = mean_and_stderr([1.0, 2.0, 3.0])
    assert mean == 2.0 and se == pytest.approx(1 / math.sqrt(3))


@pytest.fixture(scope="module")
def tiny():
    from prefloop.models.load import load_causal_lm, load_tokenizer

    return load_tokenizer("tiny"), load_causal_lm("tiny").eval()


def test_sequence_logprobs_match_full_softmax(tiny):
    from prefloop.data.tokenize import encode

    tokenizer, model = tiny
    prompts, replies = ["Say hi.", "Write one sentence about rain."], ["Hi there!", "Rain is nice."]
    got = sequence_logprobs(model, tokenizer, prompts, replies, batch_size=1)
    for p, r, value in zip(prompts, replies, got):
        seq = encode(tokenizer, p, r, 512, 256)
        ids = torch.tensor([seq.input_ids])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
        targets = ids[0, 1:]
        mask = torch.tensor(seq.response_mask[1:], dtype=torch.bool)
        expected = logp[torch.arange(len(targets)), targets][mask].sum().item()
        assert value == pytest.approx(expected, abs=1e-4)


def test_kl_to_itself_is_zero_and_to_a_changed_model_is_the_log_ratio(tiny):
    import copy

    tokenizer, model = tiny
    prompts, replies = ["Say hi.", "Tell a joke."], ["Hi!", "No."]
    kl, terms = kl_to_reference(model, model, tokenizer, prompts, replies)
    assert kl == 0.0 and terms == [0.0, 0.0]
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.lm_head.weight.mul_(
            1.5
        ) if not other.config.tie_word_embeddings else other.model.embed_tokens.weight.mul_(1.5)
    kl, terms = kl_to_reference(other, model, tokenizer, prompts, replies)
    a = sequence_logprobs(other, tokenizer, prompts, replies)
    b = sequence_logprobs(model, tokenizer, prompts, replies)
    assert terms == pytest.approx([x - y for x, y in zip(a, b)])
    assert kl == pytest.approx(sum(terms) / 2) and kl != 0.0


def test_report_files(tmp_path):
    summary = {
        "task": "positive_replies",
        "num_train_prompts": 4,
        "num_eval_prompts": 2,
        "gold": {
            "before": 0.1,
            "after": 0.4,
            "before_stderr": 0.05,
            "after_stderr": 0.04,
            "improvement": 0.3,
            "win_rate": 0.75,
        },
        "kl_to_start": 1.5,
        "reward_model": {"heldout_accuracy_vs_gold": 0.7, "score_before": -0.1, "score_after": 0.3},
        "annotator": {"agreement": 0.8, "expected_agreement": 0.82},
        "timings_s": {"load": 1.0, "dpo": 2.0},
        "config": {"model": "tiny", "k": 4},
    }
    samples = [
        {
            "prompt": "Hi | there",
            "before": "meh\nok",
            "after": "great!",
            "gold_before": 0.0,
            "gold_after": 0.6,
        }
    ]
    metrics = [{"step": s, "loss": 0.69 - 0.01 * s, "rewards/accuracy": 0.5 + 0.02 * s} for s in range(1, 11)]
    paths = write_report(
        tmp_path, summary, samples, [0.0, 0.2], [0.3, 0.5], metrics, [(0.0, -0.1), (0.5, 0.3)]
    )
    for key in ("png", "md", "html"):
        assert paths[key].is_file() and paths[key].stat().st_size > 0
    md = paths["md"].read_text()
    assert "| gold score after DPO | 0.400 ± 0.040 |" in md
    assert "meh ⏎ ok" in md and "Hi \\| there" in md  # newlines and pipes do not break the table
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
