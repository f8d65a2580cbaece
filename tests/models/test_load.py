"""Loading, LoRA, reference (disabled adapter), reward heads and save_final on tiny models."""

import json

import pytest
import torch

from prefloop.models import load as L


def _perturb_lora(model, seed=0):
    """LoRA's B starts at zero (adapter = identity); give it random values so it matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def test_tiny_models_have_the_documented_shape(tiny_tokenizer):
    from transformers import AutoConfig

    for kind, arch in (("tiny", "LlamaForCausalLM"), ("tiny-reward", "LlamaForSequenceClassification")):
        cfg = AutoConfig.from_pretrained(L.resolve_model(kind))
        assert cfg.architectures == [arch]
        assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads) == (2, 64, 4)
        assert cfg.vocab_size == len(tiny_tokenizer)
    assert tiny_tokenizer.chat_template and "<|im_start|>" in tiny_tokenizer.chat_template
    # A dedicated pad token, distinct from the end-of-turn token the reward head reads.
    assert tiny_tokenizer.pad_token == "<|endoftext|>"
    assert tiny_tokenizer.pad_token_id != tiny_tokenizer.eos_token_id


def test_resolve_model_passes_hub_ids_and_rejects_non_model_dirs(tmp_path):
    assert L.resolve_model("org/some-model") == "org/some-model"
    with pytest.raises(L.ModelLoadError, match="no config.json"):
        L.resolve_model(tmp_path)


def test_save_final_full_model_reloads_with_plain_transformers(tiny_lm, tiny_tokenizer, batch, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with torch.no_grad():
        tiny_lm.model.layers[0].mlp.up_proj.weight.mul_(1.5)  # "trained" weights
        want = tiny_lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    final = L.save_final(tiny_lm, tiny_tokenizer, tmp_path)
    assert final == tmp_path / "final" and not (tmp_path / "adapter").exists()
    again = AutoModelForCausalLM.from_pretrained(final).eval()
    got = again(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(got, want)
    assert AutoTokenizer.from_pretrained(final).pad_token == tiny_tokenizer.pad_token


def test_lora_save_final_merges_and_keeps_adapter(tiny_lm, tiny_tokenizer, batch, tmp_path):
    from transformers import AutoModelForCausalLM

    total = L.count_parameters(tiny_lm)
    model = L.apply_lora(tiny_lm, r=4, alpha=8)
    assert 0 < L.count_parameters(model, trainable_only=True) < total
    _perturb_lora(model)
    model.eval()
    with torch.no_grad():
        want = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    L.save_final(model, tiny_tokenizer, tmp_path)
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "final").eval()
    assert not any("lora" in n for n, _ in merged.named_parameters())
    with torch.no_grad():
        got = merged(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert L.is_peft(model)  # save_final merged a copy; the model can keep training


def test_disabled_adapter_is_the_base_model(tiny_lm, batch):
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        base = tiny_lm(input_ids=ids, attention_mask=mask).logits.clone()
    model = L.apply_lora(tiny_lm, r=4, alpha=8)
    _perturb_lora(model)
    model.eval()
    with torch.no_grad():
        adapted = model(input_ids=ids, attention_mask=mask).logits
        with L.disabled_adapter(model):
            reference = model(input_ids=ids, attention_mask=mask).logits
        after = model(input_ids=ids, attention_mask=mask).logits
    assert (adapted - base).abs().max() > 1e-3
    torch.testing.assert_close(reference, base)
    torch.testing.assert_close(after, adapted)  # the adapter is back on after the block
    with pytest.raises(TypeError), L.disabled_adapter(torch.nn.Linear(2, 2)):
        pass


def _rewards(model, batch):
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.squeeze(-1)


def test_llama_reward_model_reads_the_last_real_token(tiny_tokenizer, batch):
    model = L.load_reward_model("tiny").eval()
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert model.config.num_labels == 1 and model.config.pad_token_id == tiny_tokenizer.pad_token_id
    padded = _rewards(model, batch)
    n = int(batch["attention_mask"][0].sum())
    alone = _rewards(
        model, {"input_ids": batch["input_ids"][:1, :n], "attention_mask": batch["attention_mask"][:1, :n]}
    )
    assert padded.shape == (2,)
    torch.testing.assert_close(padded[:1], alone, atol=1e-5, rtol=1e-5)


def test_llama_reward_bias_shifts_and_survives_reload(tiny_tokenizer, batch, tmp_path):
    from transformers import AutoModelForSequenceClassification

    model = L.load_reward_model("tiny-reward").eval()
    raw = _rewards(model, batch)
    assert L.reward_head_bias(model) == 0.0
    assert L.set_reward_bias(model, 1.5) == 1.5
    assert L.set_reward_bias(model, 0.25, add=True) == 1.75
    torch.testing.assert_close(_rewards(model, batch), raw + 1.75)
    L.save_final(model, tiny_tokenizer, tmp_path)
    assert json.loads((tmp_path / "final" / "config.json").read_text())["reward_bias"] == 1.75
    again = L.load_reward_model(tmp_path / "final").eval()
    torch.testing.assert_close(_rewards(again, batch), raw + 1.75)
    # Plain transformers has no place for a constant in Llama's bias-free head: raw scores.
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "final").eval()
    torch.testing.assert_close(_rewards(plain, batch), raw)


def test_lora_reward_model_saves_a_plain_classifier(tiny_tokenizer, batch, tmp_path):
    model = L.apply_lora(L.load_reward_model("tiny"), r=4, alpha=8, task_type="SEQ_CLS")
    _perturb_lora(model)
    model.eval()
    L.set_reward_bias(model, -0.5)
    want = _rewards(model, batch)
    L.save_final(model, tiny_tokenizer, tmp_path)
    assert (tmp_path / "adapter").is_dir()
    again = L.load_reward_model(tmp_path / "final").eval()
    torch.testing.assert_close(_rewards(again, batch), want, atol=1e-4, rtol=1e-4)


def test_minilm_reward_model_bias_lives_in_the_head(tmp_path):
    from transformers import AutoModelForSequenceClassification

    tokenizer = L.load_tokenizer("minilm")
    model = L.load_reward_model("minilm").eval()
    assert type(model).__name__ == "BertForSequenceClassification" and model.config.num_labels == 1
    enc = tokenizer(["a good answer", "a much worse and longer answer"], padding=True, return_tensors="pt")
    raw, old_bias = _rewards(model, enc), L.reward_head_bias(model)
    L.set_reward_bias(model, 2.0)
    assert L.reward_head_bias(model) == pytest.approx(2.0)
    torch.testing.assert_close(_rewards(model, enc), raw - old_bias + 2.0)
    L.save_final(model, tokenizer, tmp_path)
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "final").eval()
    # Plain transformers applies the offset: it is the classifier's own bias.
    assert plain.classifier.bias.item() == pytest.approx(2.0)
    torch.testing.assert_close(_rewards(plain, enc), raw - old_bias + 2.0)


# --------------------------------------------------------------------------- pad is never an end token


def _hub_like_chatml_dir(tmp_path, kind: str):
    """A model directory shaped like the hub's SmolLM2-Instruct: a ChatML tokenizer with a chat
    template and pad_token == eos_token == <|im_end|>, and a config with pad_token_id == eos."""
    import shutil

    from transformers import AutoConfig, AutoTokenizer

    src = L.resolve_model("tiny-reward" if kind == "reward" else "tiny")
    target = tmp_path / f"hub-like-{kind}"
    shutil.copytree(src, target)
    tok = AutoTokenizer.from_pretrained(str(target))
    tok.pad_token = tok.eos_token = "<|im_end|>"
    assert tok.chat_template and tok.pad_token_id == tok.eos_token_id
    tok.save_pretrained(str(target))
    config = AutoConfig.from_pretrained(str(target))
    config.pad_token_id = config.eos_token_id = tok.eos_token_id
    config.save_pretrained(str(target))
    return target


def test_pad_is_never_eos_for_a_hub_chatml_tokenizer(tmp_path):
    from prefloop.generation.hf import stop_token_ids

    target = _hub_like_chatml_dir(tmp_path, "causal")
    tok = L.load_tokenizer(target)
    assert tok.pad_token_id is not None and tok.pad_token_id not in stop_token_ids(tok)
    assert tok.pad_token == "<|endoftext|>"
    assert L.load_causal_lm(target).config.pad_token_id == tok.pad_token_id


def test_reward_of_a_hub_chatml_model_is_read_at_the_final_end_token(tmp_path):
    from prefloop.data.tokenize import encode, pad_batch

    target = _hub_like_chatml_dir(tmp_path, "reward")
    tok = L.load_tokenizer(target)
    model = L.load_reward_model(target).eval()
    seqs = [encode(tok, "Say hi.", "Hi there!"), encode(tok, "Name a colour.", "Blue, like the sky.")]
    assert all(s.input_ids[-1] == tok.convert_tokens_to_ids("<|im_end|>") for s in seqs)
    batch = pad_batch(seqs, tok.pad_token_id)
    with torch.no_grad():
        got = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.squeeze(-1)
        for i, s in enumerate(seqs):
            hidden = model.model(input_ids=torch.tensor([s.input_ids])).last_hidden_state[0, -1]
            expected = model.score(hidden).squeeze() + L.reward_head_bias(model)
            torch.testing.assert_close(got[i], expected, atol=1e-5, rtol=1e-5)


def test_a_tokenizer_with_no_spare_token_gets_a_new_pad_and_the_model_grows(tmp_path):
    # A base tokenizer whose only special token is eos (like GPT-2): pad must not reuse it.
    import shutil

    from transformers import AutoTokenizer

    target = tmp_path / "eos-only"
    shutil.copytree(L.resolve_model("tiny"), target)
    tok = AutoTokenizer.from_pretrained(str(target))
    tok.chat_template = None
    for name in ("pad_token", "unk_token", "bos_token"):
        setattr(tok, name, None)
    tok.eos_token = "<|endoftext|>"
    tok.save_pretrained(str(target))
    loaded = L.load_tokenizer(target)
    assert loaded.pad_token_id is not None and loaded.pad_token_id != loaded.eos_token_id
    model = L.load_causal_lm(target)
    assert model.get_input_embeddings().num_embeddings >= len(loaded)
    assert model.config.pad_token_id == loaded.pad_token_id
