"""Shared fixtures for model tests: the tiny random Llama (built once per machine, cached)."""

import pytest


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from prefloop.models.load import load_tokenizer

    return load_tokenizer("tiny")


@pytest.fixture()
def tiny_lm():
    from prefloop.models.load import load_causal_lm

    return load_causal_lm("tiny").eval()


@pytest.fixture(scope="session")
def batch(tiny_tokenizer):
    """Two right-padded chat sequences of different lengths."""
    from prefloop.data.tokenize import encode, pad_batch

    seqs = [
        encode(tiny_tokenizer, "Say hi.", "Hi there!"),
        encode(tiny_tokenizer, "Name a colour.", "Blue, the colour of the sky on a clear day."),
    ]
    return pad_batch(seqs, tiny_tokenizer.pad_token_id)
