"""Supervised fine-tuning: maximise log π(response | prompt) on demonstrations.

Provenance
----------
Ouyang et al. 2022 (InstructGPT), step 1; Stiennon et al. 2020. The seeds: train on
(prompt, response) pairs for one epoch; more epochs overfit.

    L(θ) = − Σ_{i, t ∈ response_i} log π_θ(y_{i,t} | x_i, y_{i,<t}) / Σ_i |response_i|

Shapes: input_ids, attention_mask, response_mask [B, T]; per-sequence sums [B].

Deviations / choices
--------------------
- The loss is the mean over response tokens of the whole accumulated batch on all ranks (not
  the mean of per-micro-batch means), so batch 8, batch 4 x accum 2 and 2 processes x batch 4
  give the same gradient.
- Prompt tokens carry no loss (masked), and the end-of-turn token closing the response does.
- Packing (default; `--no-packing` pads to the longest): a micro-batch's demonstrations run as
  one padding-free row, the chat template's common system turn computed once
  (`models.packing`). Unlike TRL's packing, a batch is still `batch_size` demonstrations.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from prefloop.models.logps import response_logps
from prefloop.models.packing import sequence_logps
from prefloop.train.batches import to_device
from prefloop.train.config import TrainConfig, run_cli
from prefloop.train.run import begin, load_policy, prepare_output_dir, start_run
from prefloop.train.schedule import split_by_prompt


@dataclass
class SFTConfig(TrainConfig):
    """Supervised fine-tuning on demonstrations (prompt, response): loss on response tokens only."""

    output_dir: str = "outputs/sft"
    """Where final/, checkpoints/, metrics.jsonl and config.yaml are written."""
    learning_rate: float = 2e-5
    """Peak learning rate of AdamW."""
    epochs: int = 1
    """Passes over the data when max_steps is -1 (one by default: more overfits)."""


def tokenize_demonstrations(records, tokenizer, cfg: SFTConfig):
    from prefloop.data.tokenize import encode

    return [encode(tokenizer, r.prompt, r.response, cfg.max_length, cfg.max_prompt_length) for r in records]


def load_records(cfg: SFTConfig, records=None):
    """(train, eval) demonstrations: given records, or read from cfg.data (+ eval split)."""
    from prefloop.data.io import read_records

    if records is None:
        if not cfg.data:
            raise FileNotFoundError("no training data: pass --data FILE")
        records = read_records(cfg.data, kind="demonstration")
    if cfg.eval_data:
        return list(records), read_records(cfg.eval_data, kind="demonstration")
    # By prompt: no held-out prompt is trained on (several records may share one).
    train_idx, eval_idx = split_by_prompt([r.prompt for r in records], cfg.eval_fraction, cfg.seed)
    return [records[i] for i in train_idx], [records[i] for i in eval_idx]


@torch.no_grad()
def evaluate(model, seqs, pad_id: int, cfg: SFTConfig, device) -> dict[str, float]:
    """Token-mean negative log-likelihood of held-out responses."""
    from prefloop.data.tokenize import pad_batch

    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(seqs), cfg.batch_size):
        batch = to_device(pad_batch(seqs[i : i + cfg.batch_size], pad_id), device)
        sums, counts = response_logps(
            model, batch["input_ids"], batch["attention_mask"], batch["response_mask"]
        )
        total -= sums.sum().item()
        count += int(counts.sum())
    model.train()
    loss = total / max(count, 1)
    return {"eval/loss": loss, "eval/perplexity": float(torch.tensor(loss).exp())}


def train(cfg: SFTConfig, records=None) -> Path:
    """Fine-tune cfg.model on demonstrations; returns OUTPUT/final."""
    device = begin(cfg)
    train_records, eval_records = load_records(cfg, records)
    out = prepare_output_dir(cfg)
    tokenizer, model = load_policy(cfg, device)
    pad_id = tokenizer.pad_token_id
    seqs = tokenize_demonstrations(train_records, tokenizer, cfg)
    eval_seqs = tokenize_demonstrations(eval_records, tokenizer, cfg)

    run = start_run(cfg, out, model, "sft", num_records=len(seqs))
    model.train()
    for step in range(run.start_step, run.total_steps):
        started = time.perf_counter()
        micro = [[seqs[i] for i in ids] for ids in run.micro_batches(step)]
        # Each micro-batch's token-mean loss, weighted by its share of the response tokens of the
        # whole step on every rank: the step's loss is the token mean of the full batch.
        counts = [sum(sum(s.response_mask[1:]) for s in chunk) for chunk in micro]
        weights, scales = run.loss_weights(step, counts)
        parts, tokens = [], 0
        for i, (chunk, weight, scale) in enumerate(zip(micro, weights, scales)):
            sums, _ = sequence_logps(run.train_model, chunk, pad_id, device, share_prefix=cfg.share_prefix)
            loss = -sums.sum() / max(counts[i], 1)
            run.backward(loss * scale, last=i == len(micro) - 1)
            parts.append(({"loss": loss.item()}, weight))
            tokens += sum(len(s) for s in chunk) if weight > 0 else 0
        metrics = run.reduce_metrics(parts)
        (metrics["response_tokens"],) = run.dist.sum([sum(weights)])
        if run.due_for_eval(step) and eval_seqs:
            metrics.update(evaluate(model, eval_seqs, pad_id, cfg, device))
        run.step_done(step, metrics, tokens, started)

    if eval_seqs:
        result = evaluate(model, eval_seqs, pad_id, cfg, device)
        run.logger.log(run.total_steps, result)
        run.write_json("eval.json", result)
    run.close()
    return run.save_final(tokenizer)


def main(argv: list[str], command: str = "sft") -> None:
    run_cli(SFTConfig, argv, command, train)
