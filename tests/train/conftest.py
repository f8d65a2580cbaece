"""Fixtures for the training-loop tests: the tiny random models of prefloop.models.tiny."""

import pytest


@pytest.fixture(scope="session")
def tiny_causal():
    from prefloop.models.load import load_causal_lm

    return load_causal_lm("tiny")
