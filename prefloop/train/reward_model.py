"""Reward model: a scalar head on a pretrained backbone, trained on human comparisons.

Provenance
----------
- Pairwise (Bradley–Terry), Stiennon et al. 2020 / Ouyang et al. 2022:
      L = − mean log σ(r(x, y_c) − r(x, y_r))
- Margin (Llama 2, Touvron et al. 2023): the annotator's strength of preference m(y_c, y_r)
  is subtracted inside the sigmoid: L = − mean log σ(r_c − r_r − m). Flag `use_margin`.
- K-wise rankings (InstructGPT; the seeds): all C(K,2) pairs of a prompt form one batch
  element weighted 1/C(K,2) (`ranking_kind=pairwise`), or the listwise Plackett–Luce
  likelihood (`ranking_kind=plackett_luce`). Ties give no pair (pairwise) or share one
  denominator (Plackett–Luce, Breslow).
- Normalisation (the seeds): after training the head's bias is shifted so that the mean
  reward over the training responses is 0.

Shapes: pairwise micro-batch of b pairs -> one forward over [2b, T] (chosen rows first),
rewards [2b]; ranked micro-batch of b prompts with K_i responses -> one forward over
[Σ K_i, T], scattered into rewards [b, K_max] with a mask.

Deviations / choices
--------------------
- A pair without a margin in margin data gets m = 0.
- Held-out accuracy pools every strictly ordered pair of the held-out records.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from prefloop.models.load import torch_dtype
from prefloop.models.packing import sequence_rewards
from prefloop.train.batches import ranked_table
from prefloop.train.config import TrainConfig, TrainError, run_cli
from prefloop.train.run import begin, prepare_output_dir, prepare_trainable, start_run
from prefloop.train.schedule import split_by_prompt


@dataclass
class RewardConfig(TrainConfig):
    """Train a scalar reward model on pairwise (optionally with margins) or ranked (K-wise) preferences."""

    model: str = "minilm"
    """Backbone: 'minilm' (all-MiniLM-L6-v2, 22M, ~7x faster per step on CPU), 'default' (SmolLM2-135M-Instruct + scalar head), 'tiny', a path or a hub id."""
    output_dir: str = "outputs/reward"
    """Where final/, checkpoints/, metrics.jsonl, eval.json and config.yaml are written."""
    learning_rate: float = 1e-5
    """Peak learning rate of AdamW."""
    use_margin: bool = True
    """Use each pair's margin (Llama 2 margin loss) when the data has margins."""
    soft_labels: bool = True
    """Use a pair's meta['p_chosen'] (an AI judge's P(chosen ≻ rejected)) as a soft Bradley–Terry target when given."""
    ranking_kind: Literal["pairwise", "plackett_luce"] = "pairwise"
    """Loss for ranked data: all C(K,2) pairs per prompt, or the Plackett-Luce listwise likelihood."""
    eval_fraction: float = 0.1
    """Share of the data held out for the pairwise-accuracy evaluation (seeded); ignored when eval_data is set."""
    normalize_rewards: bool = True
    """After training, shift the head's bias so the mean reward over the training responses is 0."""


# --------------------------------------------------------------------------- data


def load_records(cfg: RewardConfig, records=None):
    """(train, eval) records, all pairwise or all ranked."""
    from prefloop.data.io import kind_of, read_records

    def read(path):
        found = read_records(path)
        if found and kind_of(found[0]) not in ("pairwise", "ranked"):
            found = read_records(path, kind="pairwise")  # converts, or names what is missing
        return found

    if records is None:
        if not cfg.data:
            raise FileNotFoundError("no training data: pass --data FILE")
        records = read(cfg.data)
    records = list(records)
    kinds = {kind_of(r) for r in records}
    if not kinds <= {"pairwise", "ranked"} or len(kinds) > 1:
        raise TrainError(f"reward model data must be all pairwise or all ranked, got {sorted(kinds)}")
    if cfg.eval_data:
        return records, read(cfg.eval_data)
    # By prompt: no held-out prompt is trained on (several records may share one).
    train_idx, eval_idx = split_by_prompt([r.prompt for r in records], cfg.eval_fraction, cfg.seed)
    return [records[i] for i in train_idx], [records[i] for i in eval_idx]


def tokenize(records, tokenizer, cfg: RewardConfig) -> list[dict]:
    """Per record: token sequences of its responses (best first for pairs), ranks and margin."""
    from prefloop.data.records import PreferencePair
    from prefloop.data.tokenize import encode

    def enc(prompt, response):
        return encode(tokenizer, prompt, response, cfg.max_length, cfg.max_prompt_length)

    items = []
    for r in records:
        if isinstance(r, PreferencePair):
            items.append(
                {
                    "seqs": [enc(r.prompt, r.chosen), enc(r.prompt, r.rejected)],
                    "ranks": [0, 1],
                    "margin": r.margin,
                    "p_chosen": r.meta.get("p_chosen") if cfg.soft_labels else None,
                }
            )
        else:
            ranks = [r.rank_of(i) for i in range(len(r.responses))]
            items.append({"seqs": [enc(r.prompt, y) for y in r.responses], "ranks": ranks, "margin": None})
    return items


# --------------------------------------------------------------------------- model


def load_model(cfg: RewardConfig, device: torch.device):
    """Tokenizer + scalar-head model (with LoRA and gradient checkpointing as configured)."""
    from prefloop.models.load import load_reward_model, load_tokenizer

    tokenizer = load_tokenizer(cfg.model)
    model = load_reward_model(cfg.model, dtype=torch_dtype(cfg.dtype))
    return tokenizer, prepare_trainable(model, cfg, "SEQ_CLS").to(device)


def score_seqs(model, seqs, pad_id: int, device, share_prefix: bool = True) -> torch.Tensor:
    """Scalar rewards [N] of tokenized sequences (one forward pass; packed when the model has
    packing enabled, with shared prompts computed once on a causal backbone)."""
    return sequence_rewards(model, seqs, pad_id, device, share_prefix=share_prefix)


def batch_loss(model, items, pad_id: int, cfg: RewardConfig, device):
    """(loss, metrics, weight, tokens) of one micro-batch: all its responses in one forward pass."""
    from prefloop.losses import bradley_terry_loss, ranking_loss

    seqs = [s for item in items for s in item["seqs"]]
    rewards = score_seqs(model, seqs, pad_id, device, cfg.share_prefix)
    tokens = sum(len(s.input_ids) for s in seqs)
    if all_pairs(items):
        chosen, rejected = rewards[0::2], rewards[1::2]
        margin = None
        if cfg.use_margin and any(item["margin"] is not None for item in items):
            margin = torch.tensor([item["margin"] or 0.0 for item in items], device=rewards.device)
        soft = None
        if any(item.get("p_chosen") is not None for item in items):
            soft = torch.tensor(
                [1.0 if item.get("p_chosen") is None else float(item["p_chosen"]) for item in items],
                device=rewards.device,
            )
        loss, metrics = bradley_terry_loss(chosen, rejected, margin, soft)
    else:
        table, mask, ranks = ranked_table(rewards, items)
        loss, metrics = ranking_loss(table, mask, kind=cfg.ranking_kind, ranks=ranks)
        metrics.pop("num_pairs", None)
    return loss, metrics, batch_loss_weight(items, cfg.ranking_kind), tokens


@torch.no_grad()
def evaluate(model, items, pad_id: int, cfg: RewardConfig, device) -> dict[str, float]:
    """Held-out pairwise accuracy over every strictly ordered pair, and the mean loss."""
    model.eval()
    correct, pairs, loss_sum, weight_sum = 0, 0, 0.0, 0.0
    for i in range(0, len(items), cfg.batch_size):
        chunk = items[i : i + cfg.batch_size]
        loss, _, weight, _ = batch_loss(model, chunk, pad_id, cfg, device)
        loss_sum += loss.item() * weight
        weight_sum += weight
        seqs = [s for item in chunk for s in item["seqs"]]
        rewards = score_seqs(model, seqs, pad_id, device, cfg.share_prefix).tolist()
        pos = 0
        for item in chunk:
            r, rk = rewards[pos : pos + len(item["seqs"])], item["ranks"]
            pos += len(rk)
            for a in range(len(rk)):
                for b in range(len(rk)):
                    if rk[a] < rk[b]:
                        pairs += 1
                        correct += int(r[a] > r[b])
    model.train()
    return {
        "eval/accuracy": correct / max(pairs, 1),
        "eval/loss": loss_sum / max(weight_sum, 1),
        "eval/num_pairs": pairs,
    }


@torch.no_grad()
def mean_training_reward(model, items, pad_id: int, cfg: RewardConfig, device) -> float:
    """Mean reward over the distinct training responses (each sequence scored once)."""
    model.eval()
    unique = {tuple(s.input_ids): s for item in items for s in item["seqs"]}
    seqs = list(unique.values())
    total = 0.0
    for i in range(0, len(seqs), cfg.batch_size):
        total += (
            score_seqs(model, seqs[i : i + cfg.batch_size], pad_id, device, cfg.share_prefix).sum().item()
        )
    return total / max(len(seqs), 1)


# --------------------------------------------------------------------------- loop


def train(cfg: RewardConfig, records=None) -> Path:
    """Train a reward model; returns OUTPUT/final (AutoModelForSequenceClassification, num_labels=1)."""
    from prefloop.models.load import set_reward_bias

    device = begin(cfg)
    train_records, eval_records = load_records(cfg, records)
    out = prepare_output_dir(cfg)
    tokenizer, model = load_model(cfg, device)
    pad_id = tokenizer.pad_token_id
    items = tokenize(train_records, tokenizer, cfg)
    eval_items = tokenize(eval_records, tokenizer, cfg)
    if not any(batch_loss_weight([item], cfg.ranking_kind) for item in items):
        raise TrainError(
            f"{cfg.data or 'the given records'}: no training record orders two of its responses "
            f"(every ranking is a tie): a {cfg.ranking_kind} reward model has nothing to learn from"
        )

    run = start_run(cfg, out, model, "reward", num_records=len(items))
    model.train()
    for step in range(run.start_step, run.total_steps):
        started = time.perf_counter()
        micro = [[items[i] for i in ids] for ids in run.micro_batches(step)]
        # Examples of the whole accumulated step on every rank, so its loss is the full-batch mean.
        weights, scales = run.loss_weights(step, [batch_loss_weight(m, cfg.ranking_kind) for m in micro])
        parts, tokens = [], 0
        for i, (chunk, weight, scale) in enumerate(zip(micro, weights, scales)):
            loss, metrics, _, n_tokens = batch_loss(run.train_model, chunk, pad_id, cfg, device)
            run.backward(loss * scale, last=i == len(micro) - 1)
            parts.append(({"loss": loss.item(), **metrics}, weight))
            tokens += n_tokens if weight > 0 else 0
        metrics = run.reduce_metrics(parts)
        if run.due_for_eval(step) and eval_items:
            metrics.update(evaluate(model, eval_items, pad_id, cfg, device))
        run.step_done(step, metrics, tokens, started)

    result = evaluate(model, eval_items, pad_id, cfg, device) if eval_items else {}
    if cfg.normalize_rewards:
        shift = mean_training_reward(model, items, pad_id, cfg, device)
        set_reward_bias(model, -shift, add=True)
        result["bias_shift"] = -shift
        result["mean_train_reward_after"] = mean_training_reward(model, items, pad_id, cfg, device)
    if result:
        run.logger.log(run.total_steps, result)
    run.write_json("eval.json", {"num_train": len(items), "num_eval": len(eval_items), **result})
    run.close()
    return run.save_final(tokenizer)


def all_pairs(items) -> bool:
    """Whether a micro-batch is pairwise data (chosen then rejected), scored with Bradley-Terry."""
    return all(len(item["seqs"]) == 2 and item["ranks"] == [0, 1] for item in items)


def batch_loss_weight(items, ranking_kind: str) -> int:
    """The count `batch_loss` averages over: pairs, or the rankings `ranking_loss` counts
    (`ranking_rows`: with a strictly ordered pair, or for Plackett–Luce with ≥ 2 responses,
    all-tied ones included)."""
    from prefloop.losses.reward import ranking_rows

    if all_pairs(items):
        return len(items)
    _, mask, ranks = ranked_table(torch.zeros(sum(len(item["seqs"]) for item in items)), items)
    return int(ranking_rows(mask, ranking_kind, ranks).sum())


def main(argv: list[str], command: str = "reward") -> None:
    run_cli(RewardConfig, argv, command, train)
