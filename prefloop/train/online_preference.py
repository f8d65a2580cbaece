"""Online preference optimization with a teacher: online DPO and Nash-MD.

Provenance
----------
- Online DPO: Guo et al. 2024, "Direct Language Model Alignment from Online AI Feedback" (OAIF).
  Each step the current policy samples two replies per prompt, a teacher (AI judge, reward
  model, simulated annotator) picks one, and the DPO loss is taken on the fresh pair:
      L = − mean log σ(β [ (log π_θ(y_w) − log π_ref(y_w)) − (log π_θ(y_l) − log π_ref(y_l)) ])
- Nash-MD: Munos et al. 2023, "Nash Learning from Human Feedback". Each step y ~ π_θ and an
  alternative y' ~ π^α_mix ∝ π_θ^(1−α) π_ref^α (`prefloop.generation.mixture`); the teacher gives
  P(y ≻ y'); the loss is `prefloop.losses.online_preference.nash_md_loss` (REINFORCE with a ½
  baseline on the preference, plus τ·KL(π_θ ‖ π_ref) in score-function form), τ = `beta`.

The pieces are the online-RL loop's (`prefloop.train.online`: the rollout of sampled token ids,
its micro-batches and token log-probs — never re-tokenized text), the pure losses
(`dpo_loss`, `nash_md_loss`) and the generation seam (`HFGenerator`); the reference is the
start model (the adapter-disabled base with LoRA, else a frozen copy), computed live.

Shapes: a step's batch is B prompts; online DPO forms ≤ B pairs (ties and skips are dropped)
and runs one forward over [2·pairs, T]; Nash-MD runs one over [B, T] (y only; y' is not trained on).

Several processes (`accelerate launch` with the DDP config; `prefloop.dist`), as the online-RL
loop: rank r of W samples the r-th contiguous share of the step's B prompts (its replies and,
for Nash-MD, the alternatives), with per-prompt seeds (`prompt_seeds`; `prompt_seed` of the run
seed, the step and the prompt's place), so a prompt's samples are those one process draws.
The replies are gathered on every rank and rank 0 alone asks the teacher about the whole step
(a stochastic teacher's random stream and an AI judge's cache are one process's, and the judge
is loaded once); the verdicts are broadcast. Each rank then takes the loss of its own prompts'
pairs, weighted by its share of the step's pairs (Nash-MD: prompts); the gradients are summed
over ranks before the optimizer step, so it is the gradient of the whole step's mean loss.
Metrics are pair- (prompt-) weighted means over ranks; rank 0 writes them, eval.json and final/.

Deviations
----------
- One optimizer step per batch of fresh samples (no reuse of samples across steps).
- Nash-MD's preference is the teacher's soft label when it gives one (else 1 / ½ / 0 from the
  verdict; a skip counts ½, which contributes no gradient).

Reported: per-step teacher preference/ties, DPO metrics or Nash-MD score and KL; at the end,
OUTPUT/eval.json with the teacher's win rate of the trained policy against the start model on
held-out prompts (same sampling seed), and the score before/after under the simulated
teacher's gold or the reward teacher's reward.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from prefloop.train.config import TrainConfig, TrainError, run_cli
from prefloop.train.logs import write_json
from prefloop.train.run import begin, load_policy, prepare_output_dir, save_final, start_run


@dataclass
class OnlinePreferenceConfig(TrainConfig):
    """Online preference optimization: the policy samples, a teacher picks, the policy learns from the fresh pairs."""

    output_dir: str = "outputs/online_dpo"
    """Where final/, metrics.jsonl, eval.json and config.yaml are written."""
    prompts: str = ""
    """Prompts (JSONL with 'prompt'); '' = the demo's task (positive_replies)."""
    num_eval_prompts: int = 10
    """Prompts held out for the win rate against the start model."""
    max_steps: int = 20
    """Optimizer steps (each on fresh samples)."""
    batch_size: int = 4
    """Prompts per step (with several processes, the whole step's: each process samples a contiguous share)."""
    prompt_seeds: Literal["auto", "on", "off"] = "auto"
    """Sample each prompt's replies with a seed of its own (from seed, step and the prompt's place in the step), so the samples do not depend on which prompts share a batch or a process; 'auto': on with several processes (required there), off alone (one seeded stream, batched across prompts)."""
    learning_rate: float = 5e-5
    """Peak learning rate (use ~5e-4 with --lora)."""
    beta: float = 0.1
    """DPO β; Nash-MD's KL coefficient τ."""
    mixture: float = 0.125
    """Nash-MD: α of the geometric mixture π_θ^(1−α) π_ref^α that draws the alternative reply."""
    max_new_tokens: int = 32
    """Tokens per sampled reply."""
    temperature: float = 1.0
    """Sampling temperature."""
    logp_average: Literal["sum", "mean"] = "sum"
    """Sequence log-prob: sum over reply tokens or mean per token."""
    teacher: Literal["sim", "ai", "reward"] = "sim"
    """Who picks: 'sim' (stochastic B-Pref teacher over the VADER gold), 'ai' (--judge), 'reward' (--reward-model)."""
    sim_beta: float = 4.0
    """β of the simulated teacher, in gold units (4 = the demo annotator's τ = 0.25)."""
    judge: str = "default"
    """AI judge for --teacher ai: 'default', 'tiny', a path or an OpenAI-compatible URL."""
    judge_cache: str = "judge_cache.sqlite"
    """SQLite cache of the AI judge ('' = none)."""
    reward_model: str = ""
    """The reward of --teacher reward (P(a ≻ b) = σ(r_a − r_b)): a `prefloop reward` directory, or any --reward spec of the online RL commands (rm:DIR, gold:NAME, MODULE:FUNCTION, FILE.py:FUNCTION, sums)."""


def make_online_teacher(cfg: OnlinePreferenceConfig):
    if cfg.teacher == "sim":
        from prefloop.rewards.gold import SentimentGold
        from prefloop.teachers.simulated import SimulatedTeacher

        return SimulatedTeacher(
            SentimentGold(), beta=cfg.sim_beta, seed=cfg.seed, name=f"sim:stoc-{cfg.sim_beta:g}"
        )
    if cfg.teacher == "ai":
        from prefloop.teachers.judge import AIJudge, make_backend

        return AIJudge(make_backend(cfg.judge, device="cpu"), cache=cfg.judge_cache or None)
    if not cfg.reward_model:
        raise TrainError("--teacher reward needs --reward-model DIR (or any --reward spec)")
    from prefloop.rewards import load_reward
    from prefloop.teachers.reward import RewardTeacher

    return RewardTeacher(
        load_reward(cfg.reward_model, device=cfg.device), name=f"reward:{Path(cfg.reward_model).name}"
    )


def _prompts(cfg: OnlinePreferenceConfig) -> tuple[list[Any], list[Any]]:
    if cfg.prompts:
        from prefloop.generation.cli import read_prompts

        prompts = read_prompts(cfg.prompts)
    else:
        from prefloop.tasks import task_prompts

        prompts = task_prompts("positive_replies")
    if not 0 <= cfg.num_eval_prompts < len(prompts):
        raise TrainError(f"num_eval_prompts must be in 0..{len(prompts) - 1}, got {cfg.num_eval_prompts}")
    order = list(range(len(prompts)))
    random.Random(cfg.seed).shuffle(order)
    return [prompts[i] for i in order[cfg.num_eval_prompts :]], [
        prompts[i] for i in order[: cfg.num_eval_prompts]
    ]


def _preference_value(pref) -> float:
    if pref.probability is not None:
        return float(pref.probability)
    return {"a": 1.0, "b": 0.0}.get(pref.which, 0.5)


def _sequence_logps(model, reference, roll, ids, pad_id: int, device, cfg: OnlinePreferenceConfig):
    """Sequence log-probs [len(ids)] of rollout rows `ids` under the policy (with grad) and the
    reference, from the online loop's micro-batch and token log-probs; and the token count."""
    from prefloop.train.online import micro_batch, token_logps

    mb = micro_batch(roll, ids, pad_id, device)
    policy_tok, _ = token_logps(model, mb)
    ref_tok = reference.apply(lambda m: token_logps(m, mb)[0])
    mask = mb["mask"]
    if cfg.logp_average == "mean":
        n = mask.sum(-1).clamp(min=1)
        return (policy_tok * mask).sum(-1) / n, (ref_tok * mask).sum(-1) / n, int(mb["attention_mask"].sum())
    return (policy_tok * mask).sum(-1), (ref_tok * mask).sum(-1), int(mb["attention_mask"].sum())


def _step_prompts(n: int, batch_size: int, seed: int, step: int) -> list[int]:
    """Indices of the training prompts of step `step`: consecutive slices of an order reshuffled
    (Python's `random`, seeded with `seed`) at each step that starts a new pass over the prompts.
    A function of (seed, step) alone: every rank, and a resumed run, picks the same prompts."""
    order, rng = list(range(n)), random.Random(seed)
    for s in range(step + 1):
        if (s * batch_size) % n < batch_size:
            rng.shuffle(order)
    return [order[(step * batch_size + i) % n] for i in range(batch_size)]


def _alternatives(model, reference, tokenizer, prompts, first: int, seeds: int | None, step: int, cfg):
    """Nash-MD's alternative reply to each prompt, from the geometric mixture. With per-prompt
    seeds each prompt is drawn alone with a seed of its own (`prompt_seed`'s stream 1, apart
    from its reply's), so the draw does not depend on the other prompts of its batch or rank."""
    from prefloop.generation.mixture import sample_geometric_mixture
    from prefloop.train.online import prompt_seed

    def draw(batch, seed):
        return sample_geometric_mixture(
            model, reference, tokenizer, batch, cfg.mixture, cfg.max_new_tokens, cfg.temperature, seed=seed
        )

    if seeds is None:
        return draw(prompts, cfg.seed * 100003 + step)
    return [draw([p], prompt_seed(seeds, step, first + j, stream=1))[0] for j, p in enumerate(prompts)]


def train(cfg: OnlinePreferenceConfig, algorithm: str = "online_dpo", teacher=None) -> Path:
    """Run online DPO or Nash-MD; returns OUTPUT/final.

    `teacher`: any `Teacher` (default: `make_online_teacher(cfg)`); with several processes only
    rank 0's is asked."""
    from prefloop.generation.hf import HFGenerator
    from prefloop.losses import dpo_loss
    from prefloop.losses.online_preference import nash_md_loss
    from prefloop.models.load import torch_dtype
    from prefloop.models.reference import Reference
    from prefloop.teachers.base import compare_many
    from prefloop.train.online import build_rollout, gather_shares, per_prompt_seeds, sample_completions
    from prefloop.train.run import process

    if algorithm not in ("online_dpo", "nash_md"):
        raise TrainError(f"unknown algorithm {algorithm!r}")
    if cfg.beta <= 0 and algorithm == "online_dpo":
        raise TrainError(f"beta must be > 0, got {cfg.beta}")
    if cfg.max_steps < 1:
        raise TrainError(f"max_steps must be >= 1 for an online run, got {cfg.max_steps}")
    device = begin(cfg)
    dist = process(cfg)
    if cfg.batch_size < dist.world_size:
        raise TrainError(
            f"batch_size {cfg.batch_size} prompts per step on {dist.world_size} processes: "
            "each process needs at least one prompt"
        )
    seeds = per_prompt_seeds(cfg.prompt_seeds, cfg.seed, dist.world_size)
    train_prompts, eval_prompts = _prompts(cfg)
    out = prepare_output_dir(cfg)
    tokenizer, model = load_policy(cfg, device)
    pad_id = tokenizer.pad_token_id
    reference = Reference(
        model, lora=cfg.lora, copy_policy=not cfg.lora, dtype=torch_dtype(cfg.dtype), device=device
    )
    if teacher is None and dist.is_main:  # rank 0 alone asks the teacher
        teacher = make_online_teacher(cfg)
    generator = HFGenerator(
        model,
        tokenizer,
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        batch_size=64,
        progress=False,
        seed=cfg.seed,
    )

    # Before training: the start model's replies to the held-out prompts, for the final win rate.
    eval_seed = cfg.seed + 7919
    before = (
        [c.text for c in generator.generate(eval_prompts, 1, seed=eval_seed)]
        if eval_prompts and dist.is_main
        else []
    )

    run = start_run(cfg, out, model, algorithm, total_steps=cfg.max_steps, shards_rollouts=True)
    k = 2 if algorithm == "online_dpo" else 1  # replies sampled from the policy per prompt
    model.train()
    for step in range(run.start_step, run.total_steps):
        started = time.perf_counter()
        prompts = [
            train_prompts[i] for i in _step_prompts(len(train_prompts), cfg.batch_size, cfg.seed, step)
        ]
        # This rank's share of the step's prompts (all of them alone): its replies, and for
        # Nash-MD the alternatives; then the whole step's on every rank, and rank 0 asks the teacher.
        lo, hi = dist.share(len(prompts))
        local = sample_completions(generator, prompts[lo:hi], k, lo, seeds, step)
        local_alts = (
            []
            if algorithm == "online_dpo"
            else _alternatives(model, reference, tokenizer, prompts[lo:hi], lo, seeds, step, cfg)
        )
        completions, alts = gather_shares(dist, lo, local, local_alts)
        if algorithm == "online_dpo":  # prompt-major: 2 per prompt
            triples = [
                (p, completions[2 * i].text, completions[2 * i + 1].text) for i, p in enumerate(prompts)
            ]
        else:
            triples = [(p, c.text, alt) for p, c, alt in zip(prompts, completions, alts)]
        prefs = dist.broadcast_object(compare_many(teacher, triples) if dist.is_main else None)
        metrics: dict[str, float] = {
            "teacher/p_first": sum(_preference_value(p) for p in prefs) / len(prefs),
            "teacher/ties": sum(p.which in ("tie", "skip") for p in prefs) / len(prefs),
        }
        # Log-probs on the sampled token ids of this rank's replies (the online-RL loop's rollout;
        # never re-tokenized text). Each rank's mean loss is weighted by its share of the step's
        # pairs (prompts), so the gradients summed over ranks are the whole step's mean loss's.
        roll = build_rollout(local, k)
        mine = prefs[lo:hi]
        tokens = 0
        part: dict[str, float] = {}
        if algorithm == "online_dpo":
            rows = [
                (2 * j, 2 * j + 1) if p.which == "a" else (2 * j + 1, 2 * j)
                for j, p in enumerate(mine)
                if p.which in ("a", "b")
            ]
            total = sum(p.which in ("a", "b") for p in prefs)
            metrics["pairs"] = float(total)
            count = len(rows)
            if rows:
                ids = [r for pair in rows for r in pair]  # chosen, rejected, chosen, rejected, ...
                policy_logps, ref_logps, tokens = _sequence_logps(
                    model, reference, roll, ids, pad_id, device, cfg
                )
                loss, part = dpo_loss(
                    policy_logps[0::2], policy_logps[1::2], ref_logps[0::2], ref_logps[1::2], beta=cfg.beta
                )
                (loss * (count / total)).backward()
                part.update(loss=loss.item(), kl=(policy_logps[0::2] - ref_logps[0::2]).mean().item())
            # else: this rank's pairs all tied or were skipped: nothing to learn from them
        else:
            count = len(mine)
            policy_logps, ref_logps, tokens = _sequence_logps(
                model, reference, roll, list(range(count)), pad_id, device, cfg
            )
            pref = torch.tensor([_preference_value(p) for p in mine], device=device)
            loss, part = nash_md_loss(policy_logps, ref_logps, pref, cfg.beta)
            (loss * (count / len(prompts))).backward()
            part["loss"] = loss.item()
        # the means over every rank's pairs (prompts): one process's numbers
        metrics.update(run.reduce_metrics([(part, float(count))]))
        run.step_done(step, metrics, tokens, started)
    run.close()

    if dist.is_main:
        _evaluate(cfg, algorithm, teacher, generator, eval_prompts, before, eval_seed, run.total_steps, out)
        save_final(model, tokenizer, out)
    dist.barrier()
    return out / "final"


def _evaluate(cfg, algorithm, teacher, generator, eval_prompts, before, eval_seed, steps, out) -> None:
    """OUTPUT/eval.json (and eval_samples.jsonl): the teacher's verdicts on the trained policy's
    replies to the held-out prompts against the start model's (same sampling seed)."""
    from prefloop.teachers.base import compare_many

    result: dict[str, Any] = {"algorithm": algorithm, "teacher": teacher.name, "steps": steps}
    if eval_prompts:
        after = [c.text for c in generator.generate(eval_prompts, 1, seed=eval_seed)]
        verdicts = compare_many(teacher, list(zip(eval_prompts, after, before)))
        result["win_rate_vs_start"] = sum(
            1.0 if v.which == "a" else 0.5 if v.which in ("tie", "skip") else 0.0 for v in verdicts
        ) / len(verdicts)
        result["mean_p_after_vs_start"] = sum(_preference_value(v) for v in verdicts) / len(verdicts)
        scorer = getattr(teacher, "gold", None) or getattr(teacher, "reward", None)
        if scorer is not None:  # a simulated teacher's gold, a reward teacher's reward
            g_before, g_after = scorer(eval_prompts, before), scorer(eval_prompts, after)
            result["score_before"] = sum(g_before) / len(g_before)
            result["score_after"] = sum(g_after) / len(g_after)
        with (out / "eval_samples.jsonl").open("w", encoding="utf-8") as f:
            for p, b, a in zip(eval_prompts, before, after):
                f.write(json.dumps({"prompt": p, "before": b, "after": a}, ensure_ascii=False) + "\n")
    if hasattr(teacher, "summary"):
        result["judge"] = teacher.summary()
    write_json(out / "eval.json", result)


@dataclass
class NashMDConfig(OnlinePreferenceConfig):
    """Nash-MD: play against a geometric mixture of the policy and the reference, judged by a teacher."""

    output_dir: str = "outputs/nash_md"
    """Where final/, metrics.jsonl, eval.json and config.yaml are written."""


def main(argv: list[str], command: str = "online-dpo") -> None:
    from prefloop.rewards import RewardError

    algorithm = "nash_md" if command == "nash-md" else "online_dpo"

    def run(cfg: OnlinePreferenceConfig) -> Path:
        try:
            return train(cfg, algorithm)
        except RewardError as exc:  # a bad --reward-model spec or score is bad input: one line, exit 2
            raise TrainError(str(exc)) from None

    run_cli(NashMDConfig if algorithm == "nash_md" else OnlinePreferenceConfig, argv, command, run)
