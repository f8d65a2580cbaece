"""The offline preference loop: DPO, IPO, KTO and Plackett–Luce DPO through one registry.

Provenance
----------
- DPO: Rafailov et al. 2023. With h = [log π(y_c|x) − log π_ref(y_c|x)] − [log π(y_r|x) − log π_ref(y_r|x)]:
      L = − mean log σ(β h)                       (cDPO with label smoothing ε: −(1−ε) log σ(βh) − ε log σ(−βh))
- IPO: Azar et al. 2023:  L = mean (h − 1/(2β))²
- Plackett–Luce DPO (DPO paper, appendix A.3): rankings of K responses, implied rewards
  β·(log π − log π_ref), listwise Plackett–Luce likelihood.
- KTO: Ethayarajh et al. 2024. r = log π(y|x) − log π_ref(y|x); z0 = KL(π‖π_ref) estimated from
  mismatched pairs (x_i, y_j), detached and clamped at 0; L = mean(λ_y − v), v = λ_D σ(β(r − z0)) for
  desirable, λ_U σ(β(z0 − r)) for undesirable.
The losses themselves are pure functions in `prefloop.losses` (PREFERENCE_LOSSES); this file only
produces the log-probabilities they need.

Shapes: a micro-batch of b records with K_i responses each (K=2 for pairs, 1 for KTO) is one
forward pass over [Σ K_i, T] (chosen and rejected stacked); sequence log-probs [Σ K_i]; pairs
split into chosen [b] / rejected [b]; rankings scattered into [b, K_max] with a mask.

Choices and deviations
----------------------
- Reference log-probs are precomputed once before training (`precompute_ref`, default) in a
  pass over the data; `--no-precompute-ref` runs the reference live each step. With LoRA the
  reference is the adapter-disabled base; without LoRA a live reference is a frozen copy.
- Sequence log-probs are summed over response tokens (`logp_average=sum`, the papers' form) or
  averaged per token (`mean`); a loop choice, the losses do not know.
- The LM head runs only at response positions (`response_logps`).
- Packing (default; `--no-packing` pads): a micro-batch's sequences run as one padding-free row
  in which a pair's (or ranking's) shared prompt is computed once (`models.packing`); the
  log-probs are the padded batch's to float tolerance.
- KTO's mismatched pairs (x_i, y_j) must pair a prompt with a completion of a *different*
  prompt, as in the KTO paper. Binary records made from a pair sit side by side with the same
  prompt, so a shift by one would often pair a prompt with its own other answer. Here
  `mismatched_partners` deranges by prompt over the whole dataset (records grouped by prompt,
  shifted by the largest group's size: each completion used once, never with its own prompt),
  which keeps the pairing fixed so the reference side can be precomputed. Held-out records
  draw their partners from held-out and training records together. z0 is the mean over the
  whole accumulated step (not per micro-batch), so accumulation does not change it.
- Loss normalisation: each micro-batch's mean loss is weighted by its share of the step's
  records on all ranks (`Run.loss_weights`), so the step's loss is the full-batch mean.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from prefloop.models.load import torch_dtype
from prefloop.models.packing import sequence_logps
from prefloop.models.reference import Reference
from prefloop.train.batches import ranked_table
from prefloop.train.config import TrainConfig, TrainError, run_cli
from prefloop.train.run import begin, load_policy, prepare_output_dir, start_run
from prefloop.train.schedule import split_by_prompt, weighted_metrics

# The record kind each loss family trains on (see prefloop.losses.PREFERENCE_LOSSES).
FAMILY_DATA_KIND = {"pairwise": "pairwise", "listwise": "ranked", "unpaired": "binary"}


def loss_family(loss: str) -> str:
    from prefloop.losses import PREFERENCE_LOSSES

    return PREFERENCE_LOSSES[loss][0]


def loss_options(fn: Callable[..., Any], cfg: PreferenceConfig) -> dict[str, Any]:
    """The loss function's keyword options (beta, label_smoothing, ...) from the config fields of the same name."""
    params = inspect.signature(fn).parameters.values()
    return {p.name: getattr(cfg, p.name) for p in params if p.default is not p.empty and hasattr(cfg, p.name)}


@dataclass
class PreferenceConfig(TrainConfig):
    """Offline preference optimisation (DPO / IPO / KTO / Plackett-Luce DPO) against a reference model."""

    output_dir: str = "outputs/preference"
    """Where final/, checkpoints/, metrics.jsonl and config.yaml are written."""
    loss: Literal["dpo", "ipo", "kto", "pl_dpo"] = "dpo"
    """Preference loss (the command sets the default: dpo, ipo or kto); pl_dpo uses whole rankings."""
    beta: float = 0.1
    """Strength of the KL regularisation towards the reference (temperature of the implied reward)."""
    label_smoothing: float = 0.0
    """DPO only: assumed share of flipped labels (conservative DPO), in [0, 0.5]."""
    logp_average: Literal["sum", "mean"] = "sum"
    """Sequence log-prob: sum over response tokens (as in the papers) or mean per token."""
    desirable_weight: float = 1.0
    """KTO only: weight λ_D of desirable examples."""
    undesirable_weight: float = 1.0
    """KTO only: weight λ_U of undesirable examples."""
    precompute_ref: bool = True
    """Compute the reference log-probs once before training (--no-precompute-ref: run the reference live)."""
    ref_model: str | None = None
    """Reference model (default: the starting model itself; with LoRA, the adapter-disabled base)."""
    learning_rate: float = 1e-6
    """Peak learning rate of AdamW."""


# --------------------------------------------------------------------------- data


def load_records(cfg: PreferenceConfig, records=None):
    """(train, eval) records converted to the loss's data kind (rankings -> pairs for dpo/ipo, ...).

    The split is by prompt (`split_by_prompt`): every record made from one raw record (the
    pairs of a ranking, the two binary records of a pair) shares its prompt, so they all land
    on the same side, exactly as if the raw records were split by prompt before converting.
    """
    from prefloop.data.io import convert_record, read_records

    kind = FAMILY_DATA_KIND[loss_family(cfg.loss)]
    if records is None:
        if not cfg.data:
            raise FileNotFoundError("no training data: pass --data FILE")
        records = read_records(cfg.data, kind=kind)
    else:
        records = [x for r in records for x in convert_record(r, kind)]
    if cfg.eval_data:
        return records, read_records(cfg.eval_data, kind=kind)
    train_idx, eval_idx = split_by_prompt([r.prompt for r in records], cfg.eval_fraction, cfg.seed)
    return [records[i] for i in train_idx], [records[i] for i in eval_idx]


def mismatched_partners(prompts: Sequence[Any]) -> list[int]:
    """For each record i, the index j of a record with a different prompt (KTO's KL pairs (x_i, y_j)).

    Records are ordered by prompt (groups contiguous, in order of first appearance) and the one
    at position q is paired with the one at q + m (mod n), m = the largest group's size. When
    m ≤ n/2 that is a derangement by prompt: a permutation in which no record meets its own
    prompt. When one prompt holds more than half of the records, those that would meet their
    own prompt take the next record of another prompt instead. Needs two distinct prompts.
    """
    from prefloop.train.schedule import prompt_key

    keys = [prompt_key(p) for p in prompts]
    group = {k: g for g, k in enumerate(dict.fromkeys(keys))}
    if len(group) < 2:
        raise TrainError(
            "KTO's KL baseline pairs each prompt with a completion of another prompt, "
            f"but the data has {len(group)} distinct prompt(s); it needs at least 2"
        )
    n = len(keys)
    order = sorted(range(n), key=lambda i: group[keys[i]])
    shift = max(keys.count(k) for k in group)
    partners = [0] * n
    for q, i in enumerate(order):
        step = shift
        while keys[order[(q + step) % n]] == keys[i]:
            step += 1
        partners[i] = order[(q + step) % n]
    return partners


def tokenize(records, tokenizer, cfg: PreferenceConfig, others: Sequence[Any] = ()) -> list[dict]:
    """Per record: its sequences (chosen first / ranked / single completion) and labels.

    KTO: each record also gets a mismatched sequence (its prompt with another prompt's
    completion, `mismatched_partners`), drawn from `records` and `others` together.
    """
    from prefloop.data.tokenize import encode

    def enc(prompt, response):
        return encode(tokenizer, prompt, response, cfg.max_length, cfg.max_prompt_length)

    family = loss_family(cfg.loss)
    if family == "unpaired" and records:
        pool = list(records) + list(others)
        partners = mismatched_partners([r.prompt for r in pool])
    items: list[dict[str, Any]] = []
    for i, r in enumerate(records):
        if family == "pairwise":
            items.append({"seqs": [enc(r.prompt, r.chosen), enc(r.prompt, r.rejected)]})
        elif family == "listwise":
            ranks = [r.rank_of(i) for i in range(len(r.responses))]
            items.append({"seqs": [enc(r.prompt, y) for y in r.responses], "ranks": ranks})
        else:  # kto: the completion, and another prompt's completion for the KL baseline
            other = pool[partners[i]].completion
            items.append(
                {
                    "seqs": [enc(r.prompt, r.completion)],
                    "desirable": bool(r.desirable),
                    "kl_seq": enc(r.prompt, other),
                }
            )
    return items


# --------------------------------------------------------------------------- log-probs


def seq_logps(
    model: torch.nn.Module, seqs: Sequence[Any], pad_id: int, cfg: PreferenceConfig, device: torch.device
) -> torch.Tensor:
    """Sequence log-probs [N] of tokenized sequences in one forward pass (packed, prefix-shared
    when the model has packing enabled: a pair's prompt runs once for both responses)."""
    logps, _ = sequence_logps(
        model, seqs, pad_id, device, average=cfg.logp_average == "mean", share_prefix=cfg.share_prefix
    )
    return logps


class RefLogps:
    """Reference log-probs of the loop's items: precomputed once into a table, or computed live."""

    def __init__(self, reference: Reference, cfg: PreferenceConfig, device: torch.device):
        self.reference, self.cfg, self.device = reference, cfg, device
        self.table: dict[int, list[float]] = {}

    def compute(self, seqs: Sequence[Any], pad_id: int) -> torch.Tensor:
        return self.reference.apply(lambda m: seq_logps(m, seqs, pad_id, self.cfg, self.device))

    def precompute(self, items: Sequence[dict], pad_id: int, key_offset: int = 0) -> None:
        """Fill the table for `items` (keys = position + key_offset), batch_size records at a time."""
        for start in range(0, len(items), self.cfg.batch_size):
            chunk = items[start : start + self.cfg.batch_size]
            seqs = [s for item in chunk for s in all_seqs(item)]
            values = self.compute(seqs, pad_id).tolist()
            pos = 0
            for j, item in enumerate(chunk):
                n = len(all_seqs(item))
                self.table[key_offset + start + j] = values[pos : pos + n]
                pos += n

    def lookup(self, keys: list[int], items: Sequence[dict], pad_id: int) -> torch.Tensor:
        """Reference log-probs of every sequence of `items` (in `all_seqs` order), flat."""
        if self.cfg.precompute_ref:
            return torch.tensor([v for k in keys for v in self.table[k]], device=self.device)
        return self.compute([s for item in items for s in all_seqs(item)], pad_id)


def all_seqs(item: dict) -> list:
    """Sequences whose reference log-probs are needed: the responses, then KTO's mismatched one."""
    return item["seqs"] + ([item["kl_seq"]] if "kl_seq" in item else [])


# --------------------------------------------------------------------------- loss


def preference_loss(
    cfg: PreferenceConfig,
    items: Sequence[dict],
    policy: torch.Tensor,
    ref: torch.Tensor,
    kl_baseline: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """(loss, metrics) of one micro-batch from flat policy / reference log-probs of its responses."""
    from prefloop.losses import PREFERENCE_LOSSES

    family, fn = PREFERENCE_LOSSES[cfg.loss]
    options = loss_options(fn, cfg)
    if family == "pairwise":
        pc, pr, rc, rr = policy[0::2], policy[1::2], ref[0::2], ref[1::2]
        loss, metrics = fn(pc, pr, rc, rr, **options)
        # The chosen responses' mean log-ratio log π(y_c|x) − log π_ref(y_c|x) on the offline data
        # (not a KL: y_c was not sampled from π).
        metrics["logratio/chosen"] = (pc - rc).mean().item()
        return loss, metrics
    if family == "unpaired":
        desirable = torch.tensor([item["desirable"] for item in items], device=policy.device)
        loss, metrics = fn(policy, ref, desirable, kl_baseline, **options)
        metrics["logps"] = policy.mean().item()
        return loss, metrics
    pol, mask, ranks = ranked_table(policy, items)
    rf, _, _ = ranked_table(ref, items)
    loss, metrics = fn(pol, rf, mask, ranks=ranks, **options)
    best = mask & (ranks == ranks.masked_fill(~mask, 1 << 30).min(dim=1, keepdim=True).values)
    metrics["logratio/chosen"] = (pol - rf)[best].mean().item()  # best-ranked responses; not a KL
    metrics["logps/chosen"] = pol[best].mean().item()
    return loss, metrics


def loss_weight(cfg: PreferenceConfig, items) -> int:
    """The count a micro-batch's mean loss averages over (records; rankings with ≥ 2 responses)."""
    if loss_family(cfg.loss) == "listwise":
        return sum(1 for item in items if len(item["seqs"]) >= 2)
    return len(items)


def split_ref(
    cfg: PreferenceConfig, items, ref_flat: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Flat `all_seqs` reference values -> (responses' values, KTO mismatched values or None)."""
    if loss_family(cfg.loss) != "unpaired":
        return ref_flat, None
    return ref_flat[0::2], ref_flat[1::2]


@torch.no_grad()
def kto_kl_baseline(run, cfg, micro, ref: RefLogps, pad_id: int, device, key_lists, weights) -> float:
    """z0 for a step: mean over the step's records on every rank of policy − reference log-probs of mismatched pairs."""
    total, count = 0.0, 0
    for items, keys, weight in zip(micro, key_lists, weights):
        # Stand-in micro-batches (Run.micro_batches) run too: every rank must make the same
        # forward passes (DDP syncs buffers, FSDP gathers shards in each), but count nothing.
        policy_kl = seq_logps(run.train_model, [item["kl_seq"] for item in items], pad_id, cfg, device)
        _, ref_kl = split_ref(cfg, items, ref.lookup(keys, items, pad_id))
        assert ref_kl is not None  # KTO items always carry their mismatched sequence
        if weight > 0:
            total += (policy_kl - ref_kl).sum().item()
            count += len(items)
    total, count = run.dist.sum([total, count])
    return total / max(count, 1)


@torch.no_grad()
def evaluate(model, cfg, items, ref: RefLogps, pad_id: int, device, offset: int) -> dict[str, float]:
    """Held-out loss and implied-reward metrics (reference keys start at `offset`)."""
    model.eval()
    parts = []
    for start in range(0, len(items), cfg.batch_size):
        chunk = items[start : start + cfg.batch_size]
        keys = list(range(offset + start, offset + start + len(chunk)))
        ref_all, ref_kl = split_ref(cfg, chunk, ref.lookup(keys, chunk, pad_id))
        z0 = None
        if loss_family(cfg.loss) == "unpaired":
            assert ref_kl is not None
            z0 = (
                (seq_logps(model, [it["kl_seq"] for it in chunk], pad_id, cfg, device) - ref_kl).mean().item()
            )
        policy = seq_logps(model, [s for it in chunk for s in it["seqs"]], pad_id, cfg, device)
        loss, metrics = preference_loss(cfg, chunk, policy, ref_all, z0)
        parts.append(({"loss": loss.item(), **metrics}, loss_weight(cfg, chunk)))
    model.train()
    return {f"eval/{k}": v for k, v in weighted_metrics(parts).items()}


# --------------------------------------------------------------------------- loop


def train(cfg: PreferenceConfig, records=None) -> Path:
    """Optimise the policy on preferences with cfg.loss; returns OUTPUT/final."""
    if cfg.beta <= 0:
        raise TrainError(f"beta must be > 0, got {cfg.beta}")
    device = begin(cfg)
    train_records, eval_records = load_records(cfg, records)
    out = prepare_output_dir(cfg)
    tokenizer, model = load_policy(cfg, device)
    pad_id = tokenizer.pad_token_id
    items = tokenize(train_records, tokenizer, cfg)
    eval_items = tokenize(eval_records, tokenizer, cfg, others=train_records)
    eval_offset = len(items)  # reference-table keys of held-out records follow the training ones

    # The reference is fixed before any checkpoint is loaded, so a resumed run has the same one.
    reference = Reference(
        model,
        path=cfg.ref_model,
        lora=cfg.lora,
        copy_policy=not cfg.precompute_ref,  # a live reference without LoRA needs the initial weights
        dtype=torch_dtype(cfg.dtype),
        device=device,
    )
    ref = RefLogps(reference, cfg, device)
    if cfg.precompute_ref:
        ref.precompute(items, pad_id)
        ref.precompute(eval_items, pad_id, key_offset=eval_offset)

    run = start_run(cfg, out, model, cfg.loss, num_records=len(items))
    model.train()
    for step in range(run.start_step, run.total_steps):
        started = time.perf_counter()
        key_lists = run.micro_batches(step)
        micro = [[items[i] for i in keys] for keys in key_lists]
        weights, scales = run.loss_weights(step, [loss_weight(cfg, m) for m in micro])
        unpaired = loss_family(cfg.loss) == "unpaired"
        z0 = None
        if unpaired:
            z0 = kto_kl_baseline(run, cfg, micro, ref, pad_id, device, key_lists, weights)
        parts, tokens = [], 0
        for i, (chunk, keys, weight, scale) in enumerate(zip(micro, key_lists, weights, scales)):
            seqs = [s for item in chunk for s in item["seqs"]]  # chosen and rejected: one forward pass
            ref_logps, _ = split_ref(cfg, chunk, ref.lookup(keys, chunk, pad_id))
            policy_logps = seq_logps(run.train_model, seqs, pad_id, cfg, device)
            loss, metrics = preference_loss(cfg, chunk, policy_logps, ref_logps, z0)
            run.backward(loss * scale, last=i == len(micro) - 1)
            parts.append(({"loss": loss.item(), **metrics}, weight))
            tokens += sum(len(s.input_ids) for s in seqs) if weight > 0 else 0
        metrics = run.reduce_metrics(parts)
        if run.due_for_eval(step) and eval_items:
            metrics.update(evaluate(model, cfg, eval_items, ref, pad_id, device, eval_offset))
        run.step_done(step, metrics, tokens, started)

    if eval_items:
        result = evaluate(model, cfg, eval_items, ref, pad_id, device, eval_offset)
        run.logger.log(run.total_steps, result)
        run.write_json("eval.json", result)
    run.close()
    return run.save_final(tokenizer)


@dataclass
class DPOConfig(PreferenceConfig):
    """Direct preference optimization (sigmoid DPO; cDPO with label_smoothing; pl_dpo for rankings)."""

    output_dir: str = "outputs/dpo"
    """Where final/, checkpoints/, metrics.jsonl and config.yaml are written."""


@dataclass
class IPOConfig(PreferenceConfig):
    """Identity preference optimization: regress the log-ratio gap to 1/(2 beta)."""

    output_dir: str = "outputs/ipo"
    """Where final/, checkpoints/, metrics.jsonl and config.yaml are written."""
    loss: Literal["dpo", "ipo", "kto", "pl_dpo"] = "ipo"
    """Preference loss (the command sets the default: dpo, ipo or kto); pl_dpo uses whole rankings."""


@dataclass
class KTOConfig(PreferenceConfig):
    """Kahneman-Tversky optimization on binary feedback (desirable / undesirable completions)."""

    output_dir: str = "outputs/kto"
    """Where final/, checkpoints/, metrics.jsonl and config.yaml are written."""
    loss: Literal["dpo", "ipo", "kto", "pl_dpo"] = "kto"
    """Preference loss (the command sets the default: dpo, ipo or kto); pl_dpo uses whole rankings."""


COMMAND_CONFIGS = {"dpo": DPOConfig, "ipo": IPOConfig, "kto": KTOConfig}


def main(argv: list[str], command: str = "dpo") -> None:
    run_cli(COMMAND_CONFIGS.get(command, PreferenceConfig), argv, command, train)
