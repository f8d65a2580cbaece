"""Fixtures for the data tests: a tiny word-level chat tokenizer built in code (no network)."""

from __future__ import annotations

import pytest

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

WORDS = [
    "system",
    "user",
    "assistant",
    "hello",
    "hi",
    "how",
    "are",
    "you",
    "i",
    "am",
    "fine",
    "thanks",
    "the",
    "sky",
    "is",
    "blue",
    "green",
    "red",
    "what",
    "color",
    "tell",
    "me",
    "a",
    "story",
    "once",
    "upon",
    "time",
    "there",
    "was",
    "cat",
    "dog",
    "good",
    "bad",
    "yes",
    "no",
]
SPECIALS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]


def build_tokenizer(chat_template: str | None = CHATML_TEMPLATE):
    """A word-level tokenizer: specials, "\\n" as its own token, then one id per word.

    Spaces separate words and are dropped; newlines are kept as tokens so that the
    ChatML template's trailing newline after <|im_end|> is visible in the ids.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + ["\n"] + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex("\n"), behavior="isolated"),
            pre_tokenizers.Split(Regex(" +"), behavior="removed"),
        ]
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        pad_token="<pad>",
        eos_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>"],
    )
    if chat_template is not None:
        fast.chat_template = chat_template
    return fast


@pytest.fixture(scope="session")
def chat_tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session")
def plain_tokenizer():
    return build_tokenizer(chat_template=None)


@pytest.fixture(scope="session")
def make_tokenizer():
    """The builder itself, for tests that need another chat template."""
    return build_tokenizer


@pytest.fixture(scope="session")
def chatml_template():
    return CHATML_TEMPLATE
