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


def load_tokenizer_tiny():
    from prefloop.models.load import load_tokenizer

    return load_tokenizer("tiny")


@pytest.fixture(scope="module")
def tiny():
    from prefloop.models.load import load_causal_lm

    return load_tokenizer_tiny(), load_causal_lm("tiny").eval()


@pytest.fixture(scope="module")
def policy_and_samples(tiny):
    """A policy (the tiny model with perturbed weights), its reference (the tiny model) and
    256 samples from the policy at temperature 1, cut at 6 new tokens."""
    import copy

    from prefloop.data.tokenize import encode_prompt
    from prefloop.generation.hf import HFGenerator

    tokenizer, reference = tiny
    policy = copy.deepcopy(reference)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    prompts = ["Say hi.", "Tell me a joke.", "Write one sentence about rain.", "Name a colour."]
    completions = HFGenerator(policy, tokenizer, max_new_tokens=6, temperature=1.0, batch_size=32).generate(
        prompts, num_responses=64, seed=0
    )
    prompt_ids = [encode_prompt(tokenizer, prompts[c.prompt_index]) for c in completions]
    assert prompt_ids == [c.prompt_token_ids for c in completions]
    return policy, reference, prompt_ids, completions


def _exact_kl_along(policy, reference, prompt_ids, response_ids, batch=32):
    """Σ_t KL(π(·|x, y_<t) ‖ π_ref(·|x, y_<t)) over the response positions of each sample,
    each term over the full vocabulary, written out independently of prefloop's code."""
    out = []
    with torch.no_grad():
        for start in range(0, len(prompt_ids), batch):
            prompts, responses = prompt_ids[start : start + batch], response_ids[start : start + batch]
            seqs = [p + r for p, r in zip(prompts, responses)]
            width = max(map(len, seqs))
            ids = torch.tensor([s + [0] * (width - len(s)) for s in seqs])  # right padding: never read
            # the logits at position t − 1 give the law of token t
            rows = [
                (i, t)
                for i, (p, r) in enumerate(zip(prompts, responses))
                for t in range(len(p) - 1, len(seqs[i]) - 1)
            ]
            index = tuple(torch.tensor(x) for x in zip(*rows))
            logp, logq = (
                torch.log_softmax(m.lm_head(m.model(input_ids=ids).last_hidden_state[index]).double(), -1)
                for m in (policy, reference)
            )
            per_row = (logp.exp() * (logp - logq)).sum(-1)  # KL of the next-token laws, one per position
            owner = torch.tensor([i for i, _ in rows])
            out.extend(torch.zeros(len(seqs), dtype=torch.float64).index_add(0, owner, per_row).tolist())
    return out


def test_logprobs_are_those_of_the_sampled_ids(policy_and_samples):
    # Teacher-forcing prompt ids + token_ids at temperature 1 gives back the log-prob the
    # sampler drew each reply with: nothing re-tokenized, no end token added to capped replies.
    from prefloop.generation.hf import stop_token_ids

    policy, _, prompt_ids, samples = policy_and_samples
    stops = set(stop_token_ids(load_tokenizer_tiny()))
    assert sum(c.token_ids[-1] not in stops for c in samples) > len(samples) // 2  # mostly capped
    got = sequence_logprobs(policy, prompt_ids, [c.token_ids for c in samples], batch_size=37)
    assert got == pytest.approx([c.logprob for c in samples], abs=2e-3)


def test_k1_kl_agrees_with_the_exact_per_token_kl_along_the_samples(policy_and_samples):
    # E[log π(y) − log π_ref(y)] = E[Σ_t KL_t(π ‖ π_ref)] over y ~ π; per sample the two
    # differ by a zero-mean term, so their mean difference is within a few standard errors of 0.
    policy, reference, prompt_ids, samples = policy_and_samples
    response_ids = [c.token_ids for c in samples]
    kl, terms = kl_to_reference(policy, reference, prompt_ids, response_ids, batch_size=48)
    exact = _exact_kl_along(policy, reference, prompt_ids, response_ids)
    diff_mean, diff_se = mean_and_stderr([a - b for a, b in zip(terms, exact)])
    assert kl == pytest.approx(sum(terms) / len(terms))
    assert sum(exact) / len(exact) > 0.05  # the perturbation is not negligible
    assert abs(diff_mean) < 3 * diff_se
    # each term is exactly the teacher-forced log-ratio of one sample
    a = sequence_logprobs(policy, prompt_ids[:3], response_ids[:3])
    b = sequence_logprobs(reference, prompt_ids[:3], response_ids[:3])
    assert terms[:3] == pytest.approx([x - y for x, y in zip(a, b)], abs=1e-4)


def test_kl_of_a_model_to_itself_is_exactly_zero_on_capped_samples(policy_and_samples):
    policy, _, prompt_ids, samples = policy_and_samples
    kl, terms = kl_to_reference(policy, policy, prompt_ids, [c.token_ids for c in samples], batch_size=64)
    assert kl == 0.0 and set(terms) == {0.0}


def test_sequence_logprobs_rejects_mismatched_or_empty_input(tiny):
    _, model = tiny
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        sequence_logprobs(model, [[1], [2]], [[3]])
    with pytest.raises(ValueError, match="sequence 0: empty response"):
        sequence_logprobs(model, [[1]], [[]])


def _summary() -> dict:
    return {
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


def test_report_files(tmp_path):
    summary = _summary()
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


def test_report_of_an_ai_teacher_shows_its_agreement_without_an_expected_one(tmp_path):
    summary = {**_summary(), "annotator": {"teacher": "ai", "agreement": 0.489, "expected_agreement": None}}
    md = write_report(tmp_path, summary, [], [0.0], [0.1], [], [])["md"].read_text()
    assert "| ai teacher's agreement with gold | 0.489 |" in md and "0.489 / None" not in md
