"""Real tiny reward-model directories, trained with `prefloop reward`'s loop for a few steps.

- ``llama_rm``: the tiny random Llama (SmolLM2's BPE tokenizer, the policy's) + scalar head;
- ``bert_rm``: a tiny random BERT with all-MiniLM-L6-v2's WordPiece tokenizer (a tokenizer
  different from the policy's, like the default MiniLM reward model).
Each trains 2 steps on a handful of pairs, so the directories are exactly what users get.
"""

from pathlib import Path

import pytest

from prefloop.data.records import PreferencePair

PAIRS = [
    PreferencePair("Say something nice.", "What a lovely day, thank you!", "This is awful."),
    PreferencePair("How are you?", "Great, thanks for asking!", "Terrible, go away."),
    PreferencePair("Describe rain.", "Rain is calm and refreshing.", "Rain is miserable."),
    PreferencePair("A note to a friend.", "I am so happy for you!", "Whatever."),
]


def _train(model: str, out: Path) -> Path:
    from prefloop.train.reward_model import RewardConfig, train

    cfg = RewardConfig(
        model=model,
        output_dir=str(out),
        max_steps=2,
        batch_size=2,
        learning_rate=1e-3,
        max_length=64,
        max_prompt_length=32,
        save_steps=0,
        eval_fraction=0.0,
        report_to_tensorboard="no",
        device="cpu",
    )
    return Path(train(cfg, records=PAIRS))


@pytest.fixture(scope="session")
def llama_rm(tmp_path_factory) -> Path:
    return _train("tiny", tmp_path_factory.mktemp("llama_rm") / "out")


@pytest.fixture(scope="session")
def bert_rm(tmp_path_factory) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from prefloop.models.default import minilm_dir

    base = tmp_path_factory.mktemp("bert_base")
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()))
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BertForSequenceClassification(config)
    model.save_pretrained(str(base))
    tokenizer.save_pretrained(str(base))
    return _train(str(base), tmp_path_factory.mktemp("bert_rm") / "out")
