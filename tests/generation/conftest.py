"""Shared fixtures for generation tests: the tiny random Llama's tokenizer (cached per machine)."""

import pytest


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from prefloop.models.load import load_tokenizer

    return load_tokenizer("tiny")
