"""Tokenization: response masks, end-of-turn, truncation, padding (tiny word-level tokenizer)."""

from __future__ import annotations

import pytest
import torch

from prefloop.data import TokenizedSequence, encode, encode_prompt, pad_batch

PROMPT_TOKENS = [
    "<|im_start|>",
    "user",
    "\n",
    "hello",
    "how",
    "are",
    "you",
    "<|im_end|>",
    "\n",
    "<|im_start|>",
    "assistant",
    "\n",
]


def tokens(tok, ids):
    return tok.convert_ids_to_tokens(ids)


def split(seq: TokenizedSequence):
    """(prompt ids, response ids), checking that the mask is 0...0 1...1."""
    n = seq.num_prompt_tokens
    assert seq.response_mask == [0] * n + [1] * (len(seq) - n)
    return seq.input_ids[:n], seq.input_ids[n:]


def test_chat_template_masks_exactly_the_response_and_ends_with_im_end(chat_tokenizer):
    seq = encode(chat_tokenizer, "hello how are you", "i am fine thanks", max_length=64, max_prompt_length=32)
    prompt, response = split(seq)
    assert tokens(chat_tokenizer, prompt) == PROMPT_TOKENS
    # The template's "\n" after <|im_end|> is dropped: generation stops at <|im_end|>.
    assert tokens(chat_tokenizer, response) == ["i", "am", "fine", "thanks", "<|im_end|>"]
    assert response[-1] == chat_tokenizer.eos_token_id
    assert seq.num_response_tokens == 5


def test_training_prompt_ids_equal_generation_prompt_ids(chat_tokenizer, plain_tokenizer):
    for tok in (chat_tokenizer, plain_tokenizer):
        seq = encode(tok, "what color is the sky", "blue")
        assert split(seq)[0] == encode_prompt(tok, "what color is the sky")


def test_message_prompt_with_system_turn(chat_tokenizer):
    prompt = [{"role": "system", "content": "good"}, {"role": "user", "content": "hi"}]
    seq = encode(chat_tokenizer, prompt, "hello")
    p, r = split(seq)
    assert tokens(chat_tokenizer, p) == [
        "<|im_start|>",
        "system",
        "\n",
        "good",
        "<|im_end|>",
        "\n",
        "<|im_start|>",
        "user",
        "\n",
        "hi",
        "<|im_end|>",
        "\n",
        "<|im_start|>",
        "assistant",
        "\n",
    ]
    assert tokens(chat_tokenizer, r) == ["hello", "<|im_end|>"]


def test_string_prompt_is_one_user_message(chat_tokenizer):
    as_text = encode(chat_tokenizer, "hi", "hello")
    as_messages = encode(chat_tokenizer, [{"role": "user", "content": "hi"}], "hello")
    assert as_text == as_messages


def test_no_chat_template_is_text_plus_eos(plain_tokenizer):
    seq = encode(plain_tokenizer, "hello how are you", "i am fine")
    p, r = split(seq)
    assert tokens(plain_tokenizer, p) == ["hello", "how", "are", "you"]
    assert tokens(plain_tokenizer, r) == ["i", "am", "fine", "<|im_end|>"]


def test_prompt_keeps_its_end_and_response_its_start(chat_tokenizer):
    seq = encode(chat_tokenizer, "hello how are you", "i am fine thanks", max_length=6, max_prompt_length=4)
    p, r = split(seq)
    assert tokens(chat_tokenizer, p) == PROMPT_TOKENS[:1] + PROMPT_TOKENS[-3:]  # leading special kept
    assert tokens(chat_tokenizer, r) == ["i", "am"]  # cut: no end-of-turn, it did not end here
    assert len(seq) == 6


def test_truncation_only_when_needed(chat_tokenizer):
    seq = encode(chat_tokenizer, "hello how are you", "i am fine thanks", max_length=17, max_prompt_length=12)
    assert len(seq) == 17 and tokens(chat_tokenizer, split(seq)[1])[-1] == "<|im_end|>"
    seq = encode(chat_tokenizer, "hello how are you", "i am fine thanks", max_length=16, max_prompt_length=12)
    assert len(seq) == 16 and tokens(chat_tokenizer, split(seq)[1]) == ["i", "am", "fine", "thanks"]


def test_max_length_alone_leaves_one_response_token(chat_tokenizer):
    seq = encode(chat_tokenizer, "hello how are you", "i am fine", max_length=5)
    p, r = split(seq)
    assert len(p) == 4 and tokens(chat_tokenizer, r) == ["i"]


def test_encode_prompt_truncates_from_the_left(chat_tokenizer):
    ids = encode_prompt(chat_tokenizer, "hello how are you", max_prompt_length=3)
    assert tokens(chat_tokenizer, ids) == ["<|im_start|>", "assistant", "\n"]


def test_bad_lengths(chat_tokenizer):
    with pytest.raises(ValueError, match="max_prompt_length .* smaller than max_length"):
        encode(chat_tokenizer, "hi", "hello", max_length=8, max_prompt_length=8)


def test_template_that_rewrites_the_prompt_falls_back(make_tokenizer, chatml_template):
    # This template starts differently once an assistant turn exists, so the prompt ids are
    # not a prefix of the full ids; the response is then tokenized on its own + eos.
    tok = make_tokenizer("{% if messages|length > 1 %}yes {% else %}no {% endif %}" + chatml_template)
    seq = encode(tok, "hi", "i am fine")
    p, r = split(seq)
    assert tokens(tok, p)[0] == "no"
    assert tokens(tok, r) == ["i", "am", "fine", "<|im_end|>"]


def test_template_without_end_token_gets_eos(make_tokenizer):
    template = (
        "{% for m in messages %}{{ m['role'] + '\n' + m['content'] + '\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'assistant\n' }}{% endif %}"
    )
    tok = make_tokenizer(template)
    r = split(encode(tok, "hi", "i am fine"))[1]
    assert tokens(tok, r) == ["i", "am", "fine", "\n", "<|im_end|>"]


def test_pad_batch_shapes_and_masks():
    a = TokenizedSequence([5, 6, 7], [0, 1, 1])
    b = TokenizedSequence([5, 6, 7, 8, 9], [0, 0, 1, 1, 1])
    batch = pad_batch([a, b], pad_id=0)
    assert set(batch) == {"input_ids", "attention_mask", "response_mask"}
    assert all(t.dtype == torch.long and t.shape == (2, 5) for t in batch.values())
    assert batch["input_ids"].tolist() == [[5, 6, 7, 0, 0], [5, 6, 7, 8, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["response_mask"].tolist() == [[0, 1, 1, 0, 0], [0, 0, 1, 1, 1]]


def test_pad_batch_multiple_and_errors():
    batch = pad_batch([TokenizedSequence([1, 2, 3], [0, 1, 1])], pad_id=9, pad_to_multiple_of=4)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 9]]
    with pytest.raises(ValueError, match="at least one"):
        pad_batch([], pad_id=0)
    with pytest.raises(ValueError, match="pad_id is None"):
        pad_batch([TokenizedSequence([1], [1])], pad_id=None)


def test_chosen_and_rejected_stack_into_one_batch(chat_tokenizer):
    chosen = [encode(chat_tokenizer, "hi", "hello"), encode(chat_tokenizer, "what color", "blue")]
    rejected = [encode(chat_tokenizer, "hi", "no"), encode(chat_tokenizer, "what color", "the sky is red")]
    batch = pad_batch(chosen + rejected, pad_id=chat_tokenizer.pad_token_id)
    assert batch["input_ids"].shape[0] == 4
    assert batch["response_mask"].sum(dim=1).tolist() == [2, 2, 2, 5]
    assert (batch["response_mask"] <= batch["attention_mask"]).all()


# --------------------------------------------------------------------------- truncation keeps special tokens


def _with_bos(make_tokenizer):
    """A base-model tokenizer (no chat template) that starts every text with a BOS token, like Llama's."""
    from tokenizers.processors import TemplateProcessing

    tok = make_tokenizer(chat_template=None)
    bos_id = tok.convert_tokens_to_ids("<|im_start|>")
    tok._tokenizer.post_processor = TemplateProcessing(
        single="<|im_start|> $A", special_tokens=[("<|im_start|>", bos_id)]
    )
    return tok


def test_truncated_prompt_keeps_the_leading_bos_of_a_decoder(make_tokenizer):
    tok = _with_bos(make_tokenizer)
    assert tokens(tok, encode_prompt(tok, "hello how are you")) == [
        "<|im_start|>",
        "hello",
        "how",
        "are",
        "you",
    ]
    ids = encode_prompt(tok, "hello how are you", max_prompt_length=3)
    assert tokens(tok, ids) == ["<|im_start|>", "are", "you"]
    seq = encode(tok, "hello how are you", "i am fine", max_length=6, max_prompt_length=3)
    p, r = split(seq)
    assert p == ids and tokens(tok, r) == ["i", "am", "fine"]  # training sees what generation saw


def test_truncated_prompt_keeps_cls_and_sep_of_the_minilm_encoder():
    # The MiniLM reward model pools [CLS]: a long prompt cut from the left must keep it.
    from prefloop.models.load import load_tokenizer

    tok = load_tokenizer("minilm")
    prompt = " ".join(["word"] * 300) + " the question at the end"
    seq = encode(tok, prompt, "a short reply", max_length=32, max_prompt_length=16)
    p, r = split(seq)
    assert len(p) == 16 and len(seq) <= 32
    assert p[0] == tok.cls_token_id and p[-1] == tok.sep_token_id
    assert tok.decode(p[-6:-1]) == "the question at the end"
    assert tok.decode(r) == "a short reply"
    assert encode_prompt(tok, prompt, max_prompt_length=16) == p


def test_chat_prompt_keeps_its_first_turn_marker(chat_tokenizer):
    ids = encode_prompt(chat_tokenizer, "hello how are you", max_prompt_length=5)
    assert tokens(chat_tokenizer, ids) == ["<|im_start|>", "\n", "<|im_start|>", "assistant", "\n"]
