"""HFGenerator on the tiny random Llama: structure, seeds, stop tokens and log-probs."""

import copy

import pytest
import torch

from prefloop.data.tokenize import encode_prompt
from prefloop.generation.hf import Completion, Generator, HFGenerator, group_by_prompt

PROMPTS = ["Say hi.", [{"role": "user", "content": "Name a colour."}]]


@pytest.fixture(scope="module")
def lm():
    from prefloop.models.load import load_causal_lm

    return load_causal_lm("tiny")


def _teacher_forced_logprob(model, tokenizer, prompt, completion, temperature=1.0):
    """sum_t log softmax(logits_t / T)[y_t] over the response, from one forward pass."""
    prompt_ids = encode_prompt(tokenizer, prompt)
    ids = torch.tensor([prompt_ids + completion.token_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1] / temperature
    return torch.log_softmax(logits, -1).gather(-1, ids[0, len(prompt_ids) :, None]).sum().item()


def test_k_completions_per_prompt_and_seeded(lm, tiny_tokenizer):
    gen = HFGenerator(lm, tiny_tokenizer, max_new_tokens=6, batch_size=3)
    assert isinstance(gen, Generator)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = gen.generate_grouped(PROMPTS, num_responses=3, seed=7)
    assert torch.rand(1) == before  # the global RNG was not consumed
    assert [len(c) for c in first] == [3, 3]
    assert [c.prompt_index for cs in first for c in cs] == [0, 0, 0, 1, 1, 1]
    assert all(isinstance(c, Completion) and 1 <= len(c.token_ids) <= 6 for cs in first for c in cs)
    assert gen.generate_grouped(PROMPTS, num_responses=3, seed=7) == first
    assert gen.generate(PROMPTS, num_responses=3, seed=7) == [c for cs in first for c in cs]
    other = gen.generate_grouped(PROMPTS, num_responses=3, seed=8)
    assert [c.token_ids for cs in other for c in cs] != [c.token_ids for cs in first for c in cs]
    # K samples of one prompt differ from each other (random model, 6 tokens).
    assert len({tuple(c.token_ids) for c in first[0]}) > 1


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprob_matches_a_teacher_forced_pass(lm, tiny_tokenizer, temperature):
    gen = HFGenerator(lm, tiny_tokenizer, max_new_tokens=5, temperature=temperature)
    for prompt, completions in zip(PROMPTS, gen.generate_grouped(PROMPTS, num_responses=2, seed=1)):
        for c in completions:
            want = _teacher_forced_logprob(lm, tiny_tokenizer, prompt, c, temperature)
            assert c.logprob == pytest.approx(want, abs=1e-3)
            assert c.logprob < 0


def test_greedy_is_the_same_for_every_sample(lm, tiny_tokenizer):
    gen = HFGenerator(lm, tiny_tokenizer, max_new_tokens=4, temperature=0)
    completions = gen.generate(["Say hi."], num_responses=2, seed=0)
    assert completions[0] == completions[1]
    # Greedy log-prob is the model's own (temperature 1) log p of those tokens.
    want = _teacher_forced_logprob(lm, tiny_tokenizer, "Say hi.", completions[0])
    assert completions[0].logprob == pytest.approx(want, abs=1e-3)


def test_completion_stops_at_end_of_turn_and_strips_special_tokens(lm, tiny_tokenizer):
    gen = HFGenerator(lm, tiny_tokenizer, max_new_tokens=8)
    im_end = tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end in gen.stop_ids
    hello = tiny_tokenizer("Hello", add_special_tokens=False)["input_ids"]
    tokens = hello + [im_end, 0, 0]  # finished rows are padded after the stop token
    token_logps = torch.tensor([-1.0] * len(hello) + [-0.5, -9.0, -9.0])
    c = gen._completion(tokens, token_logps, prompt_ids=[5, 6], prompt_index=3)
    assert c.token_ids == hello + [im_end]
    assert c.text == "Hello"
    assert c.logprob == pytest.approx(-1.0 * len(hello) - 0.5)
    assert c.token_logprobs == [-1.0] * len(hello) + [-0.5]
    assert (c.finish_reason, c.prompt_token_ids, c.prompt_index) == ("eos", [5, 6], 3)
    capped = gen._completion(hello + hello, torch.full((2 * len(hello),), -1.0))
    assert capped.finish_reason == "length" and capped.token_ids == hello + hello


def test_bad_arguments_are_rejected(lm, tiny_tokenizer):
    with pytest.raises(ValueError, match="top_p"):
        HFGenerator(lm, tiny_tokenizer, top_p=0)
    with pytest.raises(ValueError, match="num_responses"):
        HFGenerator(lm, tiny_tokenizer).generate(["x"], num_responses=0)


def test_generates_from_a_lora_model(tiny_tokenizer):
    from prefloop.models.load import apply_lora, load_causal_lm

    model = apply_lora(load_causal_lm("tiny"), r=2, alpha=4).train()
    completions = HFGenerator(model, tiny_tokenizer, max_new_tokens=3).generate(
        ["Hi"], num_responses=2, seed=0
    )
    assert len(completions) == 2 and all(c.token_ids for c in completions)
    assert model.training  # generation switched to eval and back


# --------------------------------------------------------------------------- the Generator seam


@pytest.fixture(scope="module")
def lm64():
    from prefloop.models.load import load_causal_lm

    return load_causal_lm("tiny", dtype=torch.float64)


def _teacher_forced_token_logps(model, prompt_ids, token_ids, temperature=1.0):
    """log softmax(logits_t / T)[y_t] for each response token, one unpadded forward pass."""
    ids = torch.tensor([prompt_ids + token_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1] / temperature
    return torch.log_softmax(logits.double(), -1).gather(-1, ids[0, len(prompt_ids) :, None])[:, 0]


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_per_token_logprobs_equal_a_teacher_forced_pass_in_fp64(lm64, tiny_tokenizer, temperature):
    # Batches of 4 mix prompts of different lengths, so left padding is exercised too.
    gen = HFGenerator(lm64, tiny_tokenizer, max_new_tokens=7, temperature=temperature, batch_size=4)
    prompts = PROMPTS + ["A much longer prompt than the others, with more tokens."]
    completions = gen.generate(prompts, 2, seed=3)
    assert [c.prompt_index for c in completions] == [0, 0, 1, 1, 2, 2]
    for c in completions:
        assert c.prompt_token_ids == encode_prompt(tiny_tokenizer, prompts[c.prompt_index])
        want = _teacher_forced_token_logps(lm64, c.prompt_token_ids, c.token_ids, temperature)
        assert len(c.token_logprobs) == len(c.token_ids) == len(want)
        # transformers computes sampling scores in float32, hence 1e-5 rather than 1e-12.
        torch.testing.assert_close(
            torch.tensor(c.token_logprobs, dtype=torch.float64), want, rtol=0, atol=1e-5
        )
        assert c.logprob == pytest.approx(float(want.sum()), abs=1e-4)


def test_finish_reasons_for_capped_and_eos_stopped_samples(lm64, tiny_tokenizer):
    """A bias on <|im_end|>'s logit makes some samples stop early and others hit the cap."""
    im_end = tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    model = copy.deepcopy(lm64)
    bias = torch.zeros(model.config.vocab_size, dtype=torch.float64)
    bias[im_end] = 9.0
    model.get_output_embeddings().register_forward_hook(lambda mod, args, out: out + bias)
    gen = HFGenerator(model, tiny_tokenizer, max_new_tokens=5, batch_size=8)
    completions = gen.generate(["Say hi.", "Name a colour."], num_responses=12, seed=0)
    reasons = {c.finish_reason for c in completions}
    assert reasons == {"eos", "length"}, reasons
    for c in completions:
        stops = [t for t in c.token_ids if t in gen.stop_ids]
        if c.finish_reason == "eos":
            assert stops == [c.token_ids[-1]] and len(c.token_ids) <= 5
        else:
            assert stops == [] and len(c.token_ids) == 5
        # Still the sampling distribution's log-probs (the bias is part of the model here).
        want = _teacher_forced_token_logps(model, c.prompt_token_ids, c.token_ids)
        torch.testing.assert_close(
            torch.tensor(c.token_logprobs, dtype=torch.float64), want, rtol=0, atol=1e-5
        )


def test_rng_stream_continues_and_resumes_exactly(lm, tiny_tokenizer):
    def gen():
        return HFGenerator(lm, tiny_tokenizer, max_new_tokens=5, seed=11)

    uninterrupted = gen()
    step1 = uninterrupted.generate(PROMPTS, 2)
    step2 = uninterrupted.generate(PROMPTS, 2)
    assert [c.token_ids for c in step1] != [c.token_ids for c in step2]  # the stream moved on

    first_run = gen()
    assert first_run.generate(PROMPTS, 2) == step1  # same constructor seed, same stream
    saved = first_run.rng_state()
    resumed = gen()  # a fresh process after a restart
    resumed.set_rng_state(saved)
    assert resumed.generate(PROMPTS, 2) == step2
    # A seeded call neither uses nor advances the stream.
    again = gen()
    again.generate(PROMPTS, 2, seed=5)
    assert again.generate(PROMPTS, 2) == step1
    with pytest.raises(ValueError, match="rng_state"):
        again.set_rng_state({"nope": 1})


def test_update_weights(lm, tiny_tokenizer):
    gen = HFGenerator(copy.deepcopy(lm), tiny_tokenizer, max_new_tokens=4)
    model = gen.model
    gen.update_weights(model)  # in-process: no-op
    assert gen.model is model
    changed = copy.deepcopy(lm)
    with torch.no_grad():
        for p in changed.parameters():
            p.add_(0.05 * torch.randn_like(p))
    before = gen.generate(PROMPTS, 2, seed=0)
    gen.update_weights(changed.state_dict())  # a state dict is copied in
    assert gen.model is model
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), changed.state_dict().values()))
    assert gen.generate(PROMPTS, 2, seed=0) != before
    other = copy.deepcopy(lm)
    gen.update_weights(other)  # another module replaces the model
    assert gen.model is other
    with pytest.raises(TypeError, match="state dict"):
        gen.update_weights(3)


def test_completion_and_grouping():
    with pytest.raises(ValueError, match="finish_reason"):
        Completion("x", [1], [-0.1], finish_reason="stop")
    with pytest.raises(ValueError, match="token_logprobs"):
        Completion("x", [1, 2], [-0.1])
    cs = [Completion("a", prompt_index=1), Completion("b", prompt_index=0), Completion("c", prompt_index=1)]
    assert [[c.text for c in g] for g in group_by_prompt(cs)] == [["b"], ["a", "c"]]
    assert [len(g) for g in group_by_prompt(cs, num_prompts=3)] == [1, 2, 0]
    with pytest.raises(ValueError, match="prompt_index"):
        group_by_prompt(cs, num_prompts=1)


def test_base_module_is_torch_free():
    import subprocess
    import sys

    code = "import sys, prefloop.generation.base, prefloop.generation; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_top_p_logprobs_are_those_of_the_truncated_distribution(lm64, tiny_tokenizer):
    """With top-p the sampler's distribution is renormalised over the nucleus: log q ≥ log π."""
    from transformers import TopPLogitsWarper

    gen = HFGenerator(lm64, tiny_tokenizer, max_new_tokens=5, temperature=0.8, top_p=0.5)
    warp = TopPLogitsWarper(top_p=0.5)
    for c in gen.generate(PROMPTS, 2, seed=4):
        ids = torch.tensor([c.prompt_token_ids + c.token_ids])
        with torch.no_grad():
            logits = lm64(input_ids=ids).logits[0, len(c.prompt_token_ids) - 1 : -1].float() / 0.8
        nucleus = warp(ids, logits)  # rows are positions; top-p works per row
        want = torch.log_softmax(nucleus, -1).gather(-1, ids[0, len(c.prompt_token_ids) :, None])[:, 0]
        torch.testing.assert_close(torch.tensor(c.token_logprobs), want, rtol=0, atol=1e-4)
        model_lp = _teacher_forced_token_logps(lm64, c.prompt_token_ids, c.token_ids, 0.8)
        assert all(q >= p - 1e-6 for q, p in zip(c.token_logprobs, model_lp.tolist()))
