"""Packed, prefix-shared batches give the padded batch's log-probs, rewards and gradients.

The layout is checked by hand on a small example; the numbers against the padded computation
(transformers' own SDPA attention on a right-padded [N, T] batch) on the tiny random Llama and
a tiny random BERT classifier, in float32, to float tolerance.
"""

import pytest
import torch

from prefloop.data.tokenize import TokenizedSequence, encode, pad_batch
from prefloop.models import packing


def seq(ids, n_prompt):
    return TokenizedSequence(list(ids), [0] * n_prompt + [1] * (len(ids) - n_prompt))


def test_layout_by_hand():
    # a and b: prompt [5, 6] + replies [7, 8] and [7, 9, 4]: common prefix [5, 6, 7] (3 tokens).
    # c: [1, 2, 3] (prompt [1], reply [2, 3]), nothing in common with a and b.
    a, b, c = seq([5, 6, 7, 8], 2), seq([5, 6, 7, 9, 4], 2), seq([1, 2, 3], 1)
    p = packing.pack([a, b, c])
    # Row: prefix 5 6 7 | a's rest 8 | b's rest 9 4 | c 1 2 3
    assert p.input_ids.tolist() == [[5, 6, 7, 8, 9, 4, 1, 2, 3]]
    assert p.position_ids.tolist() == [[0, 1, 2, 3, 3, 4, 0, 1, 2]]
    t_max = 5
    assert p.gather[:, :t_max].tolist() == [[0, 1, 2, 3, 0], [0, 1, 2, 4, 5], [6, 7, 8, 0, 0]]
    assert p.key_mask.sum(1).tolist() == [4, 5, 3]
    # Prefix owned by sequence 0; b's own tokens sit at its positions 3, 4 (flat 1*5+3, 1*5+4).
    assert p.owner.tolist() == [0, 1, 2, 3, 8, 9, 10, 11, 12]
    # Response tokens: a: 7 (predicted at packed 1), 8 (at 2); b: 7 (1), 9 (2), 4 (4); c: 2 (6), 3 (7).
    assert p.loss_pos.tolist() == [1, 2, 1, 2, 4, 6, 7]
    assert p.loss_targets.tolist() == [7, 8, 7, 9, 4, 2, 3]
    assert p.loss_rows.tolist() == [0, 0, 1, 1, 1, 2, 2]
    assert p.last_pos.tolist() == [3, 5, 8] and p.first_pos.tolist() == [0, 0, 6]
    # Without sharing: every token stored once per sequence, 12 slots.
    assert packing.pack([a, b, c], share_prefix=False).num_slots == 12


def test_prefix_sharing_needs_causal():
    with pytest.raises(ValueError, match="causal"):
        packing.pack([seq([1, 2], 1)], share_prefix=True, causal=False)


@pytest.fixture()
def pairs(tiny_tokenizer):
    """Three preference pairs (chosen, rejected) with different prompt and reply lengths."""
    raw = [
        ("Say hi.", "Hi there!", "No."),
        ("Name a colour.", "Blue, the colour of the sky on a clear day.", "Blue."),
        ("What is two plus two?", "Four.", "Two plus two is five, obviously, if you ask me."),
    ]
    return [[encode(tiny_tokenizer, p, c), encode(tiny_tokenizer, p, r)] for p, c, r in raw]


def padded_logps(model, seqs, pad_id):
    from prefloop.models.logps import response_logps

    b = pad_batch(seqs, pad_id)
    return response_logps(model, b["input_ids"], b["attention_mask"], b["response_mask"])


def grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("share_prefix", [False, True])
def test_logps_and_gradients_equal_padded(tiny_tokenizer, pairs, share_prefix):
    from prefloop.models.load import load_causal_lm

    model = load_causal_lm("tiny").train()
    seqs = [s for pair in pairs for s in pair]
    ref, ref_counts = padded_logps(model, seqs, tiny_tokenizer.pad_token_id)
    (ref * torch.arange(1.0, len(seqs) + 1)).sum().backward()  # distinct weights per sequence
    want = grads(model)
    model.zero_grad()

    assert packing.enable_packing(model)
    layout = packing.pack(seqs, share_prefix=share_prefix)
    if share_prefix:  # each pair's prompt is stored once, and the system turn once for all
        assert layout.num_slots < sum(len(s) for s in seqs) - sum(pair[0].num_prompt_tokens for pair in pairs)
    else:
        assert layout.num_slots == sum(len(s) for s in seqs)
    got, counts = packing.packed_response_logps(model, layout)
    assert counts.tolist() == ref_counts.tolist()
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-4)
    (got * torch.arange(1.0, len(seqs) + 1)).sum().backward()
    have = grads(model)
    assert have.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(have[name], want[name], rtol=1e-4, atol=1e-5, msg=name)


def test_average_is_mean_per_response_token(tiny_tokenizer, pairs):
    from prefloop.models.load import load_causal_lm

    model = load_causal_lm("tiny").eval()
    packing.enable_packing(model)
    layout = packing.pack([s for pair in pairs for s in pair])
    with torch.no_grad():
        sums, counts = packing.packed_response_logps(model, layout)
        means, _ = packing.packed_response_logps(model, layout, average=True)
    torch.testing.assert_close(means, sums / counts)


def test_unpacked_calls_are_plain_sdpa(tiny_tokenizer, batch):
    """Generation and padded batches go through the same SDPA as transformers' "sdpa" implementation."""
    from prefloop.models.load import load_causal_lm

    model = load_causal_lm("tiny").eval()
    with torch.no_grad():
        want = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        packing.enable_packing(model)
        assert packing.is_packing_enabled(model)
        got = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(got, want)


def test_llama_rewards_equal_padded(tiny_tokenizer, pairs):
    from prefloop.models.load import load_reward_model, set_reward_bias

    model = load_reward_model("tiny-reward").eval()
    set_reward_bias(model, 0.25)  # a bias-less Llama head: added by a hook on the padded path
    seqs = [s for pair in pairs for s in pair]
    b = pad_batch(seqs, tiny_tokenizer.pad_token_id)
    with torch.no_grad():
        want = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, 0]
        packing.enable_packing(model)
        assert packing.supports_packed_rewards(model)
        got = packing.packed_rewards(model, packing.pack(seqs))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_bert_rewards_equal_padded():
    """An encoder: bidirectional attention per sequence, [CLS] pooling; packing without prefix sharing."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=1,
    )
    model = BertForSequenceClassification(config).eval()
    seqs = [seq([2, 5, 6, 7, 3], 2), seq([2, 5, 9, 3], 2), seq([2, 11, 12, 13, 14, 15, 3], 3)]
    b = pad_batch(seqs, 0)
    with torch.no_grad():
        want = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, 0]
        assert packing.enable_packing(model)
        layout = packing.pack(seqs, share_prefix=False, causal=False)
        got = packing.packed_rewards(model, layout)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
