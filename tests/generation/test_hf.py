"""HFGenerator on the tiny random Llama: structure, seeds, stop tokens and log-probs."""

import pytest
import torch

from prefloop.data.tokenize import encode_prompt
from prefloop.generation.hf import Completion, Generator, HFGenerator

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
    first = gen.generate(PROMPTS, num_responses=3, seed=7)
    assert torch.rand(1) == before  # the global RNG was not consumed
    assert [len(c) for c in first] == [3, 3]
    assert all(isinstance(c, Completion) and 1 <= len(c.token_ids) <= 6 for cs in first for c in cs)
    assert gen.generate(PROMPTS, num_responses=3, seed=7) == first
    other = gen.generate(PROMPTS, num_responses=3, seed=8)
    assert [c.token_ids for cs in other for c in cs] != [c.token_ids for cs in first for c in cs]
    # K samples of one prompt differ from each other (random model, 6 tokens).
    assert len({tuple(c.token_ids) for c in first[0]}) > 1


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprob_matches_a_teacher_forced_pass(lm, tiny_tokenizer, temperature):
    gen = HFGenerator(lm, tiny_tokenizer, max_new_tokens=5, temperature=temperature)
    for prompt, completions in zip(PROMPTS, gen.generate(PROMPTS, num_responses=2, seed=1)):
        for c in completions:
            want = _teacher_forced_logprob(lm, tiny_tokenizer, prompt, c, temperature)
            assert c.logprob == pytest.approx(want, abs=1e-3)
            assert c.logprob < 0


def test_greedy_is_the_same_for_every_sample(lm, tiny_tokenizer):
    gen = HFGenerator(lm, tiny_tokenizer, max_new_tokens=4, temperature=0)
    (completions,) = gen.generate(["Say hi."], num_responses=2, seed=0)
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
    c = gen._completion(tokens, token_logps)
    assert c.token_ids == hello + [im_end]
    assert c.text == "Hello"
    assert c.logprob == pytest.approx(-1.0 * len(hello) - 0.5)


def test_bad_arguments_are_rejected(lm, tiny_tokenizer):
    with pytest.raises(ValueError, match="top_p"):
        HFGenerator(lm, tiny_tokenizer, top_p=0)
    with pytest.raises(ValueError, match="num_responses"):
        HFGenerator(lm, tiny_tokenizer).generate(["x"], num_responses=0)


def test_generates_from_a_lora_model(tiny_tokenizer):
    from prefloop.models.load import apply_lora, load_causal_lm

    model = apply_lora(load_causal_lm("tiny"), r=2, alpha=4).train()
    (completions,) = HFGenerator(model, tiny_tokenizer, max_new_tokens=3).generate(
        ["Hi"], num_responses=2, seed=0
    )
    assert len(completions) == 2 and all(c.token_ids for c in completions)
    assert model.training  # generation switched to eval and back
