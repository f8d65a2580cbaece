"""KV-cache reuse across the K completions of a prompt: the same samples as prefilling each copy."""

from prefloop.generation.hf import HFGenerator
from prefloop.models.load import load_causal_lm, load_tokenizer


def test_shared_prompt_cache_gives_the_same_samples():
    tokenizer, model = load_tokenizer("tiny"), load_causal_lm("tiny").eval()
    prompts = ["How do I boil an egg?", "Hi", [{"role": "user", "content": "Tell me a joke about cats."}]]
    runs = {}
    for share in (False, True):
        gen = HFGenerator(model, tokenizer, max_new_tokens=6, seed=3, share_prompt_cache=share)
        runs[share] = gen.generate(prompts, num_responses=4)
    assert gen._prefilled_cache([(0, [1, 2, 3]), (0, [1, 2, 3])]) is not None  # the path is taken
    for a, b in zip(runs[False], runs[True], strict=True):
        assert a.token_ids == b.token_ids and a.prompt_index == b.prompt_index
        assert max(abs(x - y) for x, y in zip(a.token_logprobs, b.token_logprobs)) < 1e-5
