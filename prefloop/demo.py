"""`prefloop demo`: the whole loop on the embedded default model, measured by a hidden gold judge.

Phases (each timed and printed):
  1. load     the policy (SmolLM2-135M-Instruct by default) and the task's prompts, split
              (seeded) into training and held-out prompts;
  2. before   sample `eval_samples` replies per held-out prompt from the start model;
  3. sample   K replies per training prompt from the start model;
  4. annotate a simulated annotator ranks each prompt's K replies: Plackett–Luce noise
              over the gold score (`prefloop.teachers.simulated.SimulatedAnnotator`), so it
              is sometimes wrong; its agreement with the noiseless gold is reported;
  5. reward   a reward model is trained on those rankings (`prefloop.train.reward_model`);
              its accuracy is measured on the held-out prompts' samples against the gold
              order (and on a held-out share of the rankings against the annotator);
  6. dpo      the policy is trained with DPO on the same rankings (`prefloop.train.preference`;
              pairs best-vs-worst by default);
  7. after    the trained policy samples the held-out prompts again (same seed);
  8. eval     gold score before/after, win rate, KL(π_after ‖ π_start) per response (teacher-
              forced log-probs under both models of exactly the sampled ids: prompt ids plus
              each after-sample's token ids, no end token for replies cut at max_new_tokens),
              reward-model scores;
  9. report   OUTPUT/report.md, report.html, report.png, summary.json, samples.jsonl,
              preferences.jsonl.

Honesty rules: the gold judge reaches training only through the annotator's noisy
rankings (the records handed to the training loops carry no gold scores); before and after
use the same held-out prompts and the same sampling seed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal


@dataclass
class DemoConfig:
    """The main job: sample, simulate annotators, train a reward model and DPO, report gold score and KL."""

    config: str | None = None
    """YAML file with values for any of these fields; flags override it."""
    output_dir: str = "outputs/demo"
    """Where report.md/.html/.png, summary.json, samples and the trained models are written."""
    model: str = "default"
    """Policy to start from: 'default' (embedded SmolLM2-135M-Instruct), 'tiny' (tests), a path or hub id."""
    task: Literal["positive_replies"] = "positive_replies"
    """Built-in task (prompts + gold judge): warm, positive short replies scored by VADER sentiment."""
    num_train_prompts: int = 60
    """Training prompts (the policy samples K replies for each)."""
    num_eval_prompts: int = 30
    """Held-out prompts for evaluation, never trained on."""
    k: int = 8
    """Replies sampled per training prompt and ranked by the simulated annotator."""
    max_new_tokens: int = 32
    """Maximum new tokens per sampled reply."""
    temperature: float = 1.0
    """Sampling temperature for training samples and evaluation (1.0: the policy itself, so the KL estimate is valid)."""
    eval_samples: int = 4
    """Samples per held-out prompt, before and after training."""
    gen_batch_size: int = 64
    """Sequences per generate() call."""
    teacher: Literal["sim", "ai"] = "sim"
    """Who ranks the replies: 'sim' (the simulated annotator over the hidden gold) or 'ai' (an AI judge, --judge)."""
    judge: str = "default"
    """AI judge for --teacher ai: 'default' (embedded SmolLM2-135M-Instruct), 'tiny', a path or an OpenAI-compatible URL."""
    judge_cache: str = "judge_cache.sqlite"
    """SQLite cache of the AI judge's answers, relative to output_dir ('' = none); reruns cost nothing."""
    annotator_noise: float = 0.25
    """Annotator temperature τ in gold-score units: P(a ≻ b) = σ((g_a − g_b)/τ); 0 = noiseless."""
    max_words: int = 60
    """Gold judge: replies longer than this many words are penalised."""
    pairs: Literal["best_worst", "all", "ranking"] = "best_worst"
    """DPO data from each ranking: best vs worst reply, all C(K,2) pairs, or the whole ranking (Plackett-Luce DPO)."""
    dpo_epochs: int = 2
    """Passes of DPO over the preference data (used when dpo_steps is -1)."""
    dpo_steps: int = -1
    """DPO optimizer steps; -1 means dpo_epochs passes."""
    dpo_batch_size: int = 8
    """Preference records per DPO step."""
    dpo_lr: float = 5e-4
    """DPO peak learning rate (AdamW; linear decay); 5e-4 suits LoRA, use ~5e-5 for full fine-tuning."""
    dpo_beta: float = 0.1
    """DPO β: strength of the pull towards the start model."""
    dpo_lora: bool = True
    """Train LoRA adapters (r=16) in DPO (--no-dpo-lora: all weights); dpo/final is merged either way."""
    reward_model: str = "minilm"
    """Reward-model backbone: 'minilm' (all-MiniLM-L6-v2, fast), 'default', 'tiny', a path or hub id."""
    reward_epochs: int = 5
    """Reward-model passes over the rankings (used when reward_steps is -1)."""
    reward_steps: int = -1
    """Reward-model optimizer steps; -1 means reward_epochs passes."""
    reward_lr: float = 1e-4
    """Reward-model peak learning rate."""
    reward_batch_size: int = 8
    """Rankings per reward-model step."""
    method: Literal["dpo", "ppo", "grpo", "rloo"] = "dpo"
    """Policy optimization: 'dpo' on the rankings, or RL against the trained reward model ('ppo', 'grpo',
    'rloo'; the DPO run is done too, for a side-by-side)."""
    rl_steps: int = 30
    """RL rollout steps (each: rl_prompts_per_step prompts x rl_num_generations replies)."""
    rl_prompts_per_step: int = 8
    """Training prompts per RL step."""
    rl_num_generations: int = 4
    """Replies sampled per prompt per RL step."""
    rl_lr: float = 2e-4
    """RL peak learning rate (constant; LoRA r=16)."""
    rl_kl_coef: float = 0.05
    """Initial β of the KL penalty to the start model (adapted toward rl_kl_target)."""
    rl_kl_target: float = 4.0
    """Target KL per reply (nats) of the adaptive KL controller."""
    num_shown_samples: int = 8
    """Held-out prompts whose before/after replies are shown in the report."""
    seed: int = 0
    """Seed for the prompt split, sampling, the annotator and training."""
    device: str = "auto"
    """'auto' (cuda when available, else cpu), 'cpu', 'cuda', ..."""
    threads: int = 0
    """CPU threads for torch (0: torch's default, one per core)."""


# --------------------------------------------------------------------------- small helpers


class Phases:
    """Times named phases and prints one progress line at the start and end of each."""

    def __init__(self, total: int):
        self.total, self.count = total, 0
        self.timings: dict[str, float] = {}
        self.started = time.perf_counter()

    @contextmanager
    def phase(self, name: str, what: str) -> Iterator[None]:
        self.count += 1
        print(f"[{self.count}/{self.total}] {name}: {what} ...", flush=True)
        start = time.perf_counter()
        yield
        self.timings[name] = time.perf_counter() - start
        print(
            f"[{self.count}/{self.total}] {name}: done in {self.timings[name]:.1f} s "
            f"(total {time.perf_counter() - self.started:.1f} s)",
            flush=True,
        )


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _check(cfg: DemoConfig) -> None:
    """Reject settings that cannot work, with the field's name."""
    checks = [
        (cfg.k >= 2, "k must be at least 2 (a ranking needs two replies)"),
        (cfg.num_train_prompts >= 1, "num_train_prompts must be at least 1"),
        (cfg.num_eval_prompts >= 1, "num_eval_prompts must be at least 1"),
        (cfg.eval_samples >= 1, "eval_samples must be at least 1"),
        (cfg.max_new_tokens >= 1, "max_new_tokens must be at least 1"),
        (cfg.temperature > 0, "temperature must be > 0 (the demo samples)"),
        (cfg.annotator_noise >= 0, "annotator_noise must be >= 0"),
        (cfg.dpo_epochs >= 1 or cfg.dpo_steps > 0, "dpo_epochs or dpo_steps must be positive"),
    ]
    for ok, message in checks:
        if not ok:
            from prefloop.config import ConfigError

            raise ConfigError(message)


def _pairs_for_dpo(rankings, mode: str):
    """DPO records from rankings: best-vs-worst pairs, all pairs, or the rankings themselves."""
    from prefloop.data.io import ranked_to_pairs
    from prefloop.data.records import PreferencePair

    if mode == "ranking":
        return list(rankings)
    if mode == "all":
        return [p for r in rankings for p in ranked_to_pairs(r)]
    pairs = []
    for r in rankings:
        order = sorted(range(len(r.responses)), key=lambda i: (r.rank_of(i), i))
        best, worst = order[0], order[-1]
        if r.rank_of(best) < r.rank_of(worst):  # an all-tied ranking gives no pair
            pairs.append(PreferencePair(r.prompt, r.responses[best], r.responses[worst]))
    return pairs


def _write_jsonl(path: Path, rows) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _json_safe(value: Any) -> Any:
    """NaN/inf -> None so summary.json is strict JSON (e.g. an accuracy with no pairs to count)."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _rm_accuracy_vs_gold(rm_scores: list[float], gold: list[float], group: int) -> float:
    """Pairwise accuracy of RM scores against the gold order within each prompt's samples."""
    correct = total = 0
    for start in range(0, len(gold), group):
        g, r = gold[start : start + group], rm_scores[start : start + group]
        for i in range(len(g)):
            for j in range(i + 1, len(g)):
                if g[i] != g[j]:
                    total += 1
                    correct += int((r[i] - r[j]) * (g[i] - g[j]) > 0)
    return correct / total if total else float("nan")


def _ai_rankings(cfg: DemoConfig, out: Path, gold, prompts, responses):
    """Rank each prompt's replies with an AI judge (Copeland over both-order pairs); the gold
    scores go into meta for auditing only. Returns (records, the judge's summary)."""
    from prefloop.data.records import RankedResponses
    from prefloop.teachers.judge import AIJudge, make_backend

    judge = AIJudge(
        make_backend(cfg.judge, device="cpu" if cfg.device == "auto" else cfg.device),
        cache=(out / cfg.judge_cache) if cfg.judge_cache else None,
    )
    records = []
    for i, (prompt, rs) in enumerate(zip(prompts, responses), start=1):
        ranks = judge.rank(prompt, rs)
        g = [float(x) for x in gold([prompt] * len(rs), rs)]
        records.append(RankedResponses(prompt, list(rs), ranks, meta={"gold": g}))
        if i % 10 == 0 or i == len(prompts):
            print(f"    judged {i}/{len(prompts)} prompts", flush=True)
    return records, judge.summary()


# --------------------------------------------------------------------------- the job


def run(cfg: DemoConfig) -> dict[str, Any]:
    """Run the demo; returns the summary (also written to OUTPUT/summary.json)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _check(cfg)
    import torch

    from prefloop.config import save_yaml
    from prefloop.data.records import RankedResponses, record_to_dict
    from prefloop.eval.metrics import gold_score, kl_to_reference, mean_and_stderr
    from prefloop.eval.report import write_report
    from prefloop.generation.hf import HFGenerator
    from prefloop.models.load import load_causal_lm, load_tokenizer
    from prefloop.rewards.gold import SentimentGold
    from prefloop.tasks import split_prompts, task_prompts
    from prefloop.teachers.simulated import SimulatedAnnotator, gold_agreement
    from prefloop.train import preference, reward_model
    from prefloop.train.checkpoint import set_seed
    from prefloop.train.logs import read_metrics

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, out / "config.yaml")
    device = _device(cfg.device)
    phases = Phases(total=9 if cfg.method == "dpo" else 11)
    gold = SentimentGold(max_words=cfg.max_words)
    eval_seed = cfg.seed + 1  # the same for before and after

    with phases.phase("load", f"policy '{cfg.model}' and task '{cfg.task}'"):
        set_seed(cfg.seed)
        train_prompts, eval_prompts = split_prompts(
            task_prompts(cfg.task), cfg.num_train_prompts, cfg.num_eval_prompts, cfg.seed
        )
        tokenizer = load_tokenizer(cfg.model)
        start_model = load_causal_lm(cfg.model).to(device).eval()
        start_model.requires_grad_(False)

    def generator(model):
        return HFGenerator(
            model,
            tokenizer,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            batch_size=cfg.gen_batch_size,
            progress=False,
        )

    eval_flat_prompts = [p for p in eval_prompts for _ in range(cfg.eval_samples)]
    with phases.phase("before", f"{cfg.eval_samples} samples x {len(eval_prompts)} held-out prompts"):
        before = [
            c.text for c in generator(start_model).generate(eval_prompts, cfg.eval_samples, seed=eval_seed)
        ]
        gold_before_mean, gold_before = gold_score(gold, eval_flat_prompts, before)
        print(f"    gold score before: {gold_before_mean:.3f}", flush=True)

    with phases.phase("sample", f"K={cfg.k} replies x {len(train_prompts)} training prompts"):
        samples = generator(start_model).generate_grouped(train_prompts, cfg.k, seed=cfg.seed)
        responses = [[c.text for c in cs] for cs in samples]

    who = (
        f"AI judge '{cfg.judge}' ranks each prompt's replies (pairs in both orders)"
        if cfg.teacher == "ai"
        else f"simulated annotator ranks each prompt's replies (noise τ={cfg.annotator_noise})"
    )
    with phases.phase("annotate", who):
        judge_summary = None
        if cfg.teacher == "ai":
            audited, judge_summary = _ai_rankings(cfg, out, gold, train_prompts, responses)
            expected = None  # only the simulated annotator has a known noise model
        else:
            annotator = SimulatedAnnotator(gold, temperature=cfg.annotator_noise, seed=cfg.seed)
            audited = annotator.rank_all(train_prompts, responses)
            expected = annotator.expected_agreement([r.meta["gold"] for r in audited])
        agreement = gold_agreement(audited)
        # What training sees: prompts, replies and the annotator's ranks -- no gold scores.
        rankings = [RankedResponses(r.prompt, r.responses, r.ranks) for r in audited]
        _write_jsonl(out / "preferences.jsonl", (record_to_dict(r) for r in rankings))
        _write_jsonl(
            out / "train_samples_gold.jsonl",
            (
                {"prompt": r.prompt, "responses": r.responses, "ranks": r.ranks, "gold": r.meta["gold"]}
                for r in audited
            ),
        )
        known = f" (expected {expected:.3f})" if expected is not None else ""
        print(f"    annotator agreement with gold: {agreement:.3f}{known}", flush=True)

    with phases.phase("reward", f"reward model '{cfg.reward_model}' on {len(rankings)} rankings"):
        rm_cfg = reward_model.RewardConfig(
            model=cfg.reward_model,
            output_dir=str(out / "reward_model"),
            epochs=cfg.reward_epochs,
            max_steps=cfg.reward_steps,
            batch_size=cfg.reward_batch_size,
            learning_rate=cfg.reward_lr,
            max_length=256,
            max_prompt_length=128,
            seed=cfg.seed,
            device=cfg.device,
            save_steps=0,
            eval_fraction=0.2 if len(rankings) >= 5 else 0.0,
            report_to_tensorboard="no",
        )
        rm_path = reward_model.train(rm_cfg, records=rankings)
        rm_eval = json.loads((out / "reward_model" / "eval.json").read_text())
        from prefloop.rewards.model import RewardModelScorer

        scorer = RewardModelScorer(rm_path, device=cfg.device)
        rm_before = scorer(eval_flat_prompts, before)
        rm_acc_gold = _rm_accuracy_vs_gold(rm_before, gold_before, cfg.eval_samples)
        print(
            f"    reward model accuracy on held-out prompts vs gold: {rm_acc_gold:.3f}"
            + (
                f" (vs annotator on held-out rankings: {rm_eval['eval/accuracy']:.3f})"
                if "eval/accuracy" in rm_eval
                else ""
            ),
            flush=True,
        )

    dpo_records = _pairs_for_dpo(rankings, cfg.pairs)
    with phases.phase(
        "dpo", f"DPO on {len(dpo_records)} {'rankings' if cfg.pairs == 'ranking' else 'pairs'}"
    ):
        dpo_cfg = preference.PreferenceConfig(
            model=cfg.model,
            output_dir=str(out / "dpo"),
            loss="pl_dpo" if cfg.pairs == "ranking" else "dpo",
            beta=cfg.dpo_beta,
            learning_rate=cfg.dpo_lr,
            epochs=cfg.dpo_epochs,
            max_steps=cfg.dpo_steps,
            batch_size=cfg.dpo_batch_size,
            lora=cfg.dpo_lora,
            max_length=256,
            max_prompt_length=128,
            seed=cfg.seed,
            device=cfg.device,
            save_steps=0,
            eval_fraction=0.0,
            report_to_tensorboard="no",
        )
        policy_path = preference.train(dpo_cfg, records=dpo_records)
        dpo_metrics = read_metrics(out / "dpo")

    with phases.phase(
        "after", f"{cfg.eval_samples} samples x {len(eval_prompts)} held-out prompts, same seed"
    ):
        policy = load_causal_lm(str(policy_path)).to(device).eval()
        after_completions = generator(policy).generate(eval_prompts, cfg.eval_samples, seed=eval_seed)
        after = [c.text for c in after_completions]

    with phases.phase("eval", "gold score, win rate, KL to the start model, reward-model scores"):
        gold_after_mean, gold_after = gold_score(gold, eval_flat_prompts, after)
        wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(gold_after, gold_before))
        # The KL is scored on exactly the sampled ids: the prompt ids the generator was given
        # and each reply's token_ids (no end token for a reply cut at max_new_tokens).
        kl, kl_terms = kl_to_reference(
            policy,
            start_model,
            [c.prompt_token_ids for c in after_completions],
            [c.token_ids for c in after_completions],
        )
        _, kl_se = mean_and_stderr(kl_terms)
        capped = sum(1 for c in after_completions if not c.stopped)
        rm_after = scorer(eval_flat_prompts, after)
        print(
            f"    gold score {gold_before_mean:.3f} -> {gold_after_mean:.3f}; KL {kl:.3f} ± {kl_se:.3f} nats "
            f"({capped} of {len(after_completions)} replies cut at max_new_tokens)",
            flush=True,
        )

    rl = None
    if cfg.method != "dpo":
        rl = _rl_phases(cfg, phases, out, train_prompts, eval_prompts, scorer, gold, start_model, generator)

    with phases.phase("report", f"{out}/report.md, report.png, summary.json"):
        _, before_se = mean_and_stderr(gold_before)
        _, after_se = mean_and_stderr(gold_after)
        summary: dict[str, Any] = {
            "task": cfg.task,
            "num_train_prompts": len(train_prompts),
            "num_eval_prompts": len(eval_prompts),
            "gold": {
                "before": gold_before_mean,
                "after": gold_after_mean,
                "before_stderr": before_se,
                "after_stderr": after_se,
                "improvement": gold_after_mean - gold_before_mean,
                "win_rate": wins / len(gold_after),
            },
            "kl_to_start": kl,
            "kl_to_start_stderr": kl_se,
            "after_capped_share": capped / len(after_completions),
            "reward_model": {
                "path": str(rm_path),
                "heldout_accuracy_vs_gold": rm_acc_gold,
                "score_before": sum(rm_before) / len(rm_before),
                "score_after": sum(rm_after) / len(rm_after),
                **(
                    {"eval_accuracy_vs_annotator": rm_eval["eval/accuracy"]}
                    if "eval/accuracy" in rm_eval
                    else {}
                ),
            },
            "annotator": {
                "teacher": cfg.teacher,
                "noise": cfg.annotator_noise if cfg.teacher == "sim" else None,
                "agreement": agreement,
                "expected_agreement": expected,
                **({"judge": judge_summary} if judge_summary is not None else {}),
            },
            "dpo": {
                "path": str(policy_path),
                "num_records": len(dpo_records),
                "steps": len(dpo_metrics),
                "final_loss": dpo_metrics[-1]["loss"] if dpo_metrics else None,
            },
            "timings_s": phases.timings,
            "config": asdict(cfg),
        }
        rows = [
            {"prompt": p, "before": b, "after": a, "gold_before": gb, "gold_after": ga}
            for p, b, a, gb, ga in zip(eval_flat_prompts, before, after, gold_before, gold_after)
        ]
        _write_jsonl(out / "samples.jsonl", rows)
        shown = rows[:: cfg.eval_samples][: cfg.num_shown_samples]  # the first sample of each prompt
        summary["timings_s"] = dict(phases.timings)
        summary["timings_s"]["total (before the report)"] = time.perf_counter() - phases.started
        write_report(
            out,
            summary,
            shown,
            gold_before,
            gold_after,
            dpo_metrics,
            {"before": list(zip(gold_before, rm_before)), "after": list(zip(gold_after, rm_after))},
        )
        if rl is not None:
            summary["rl"] = _rl_report(out, cfg, rl, gold_before_mean, gold_after_mean, kl)
    summary["timings_s"] = dict(phases.timings)
    summary["timings_s"]["total"] = time.perf_counter() - phases.started
    (out / "summary.json").write_text(json.dumps(_json_safe(summary), indent=2, ensure_ascii=False) + "\n")
    print(
        f"gold score {gold_before_mean:.3f} -> {gold_after_mean:.3f} "
        f"(win rate {summary['gold']['win_rate']:.2f}), KL {kl:.3f} ± {kl_se:.3f} nats, "
        f"RM accuracy {rm_acc_gold:.3f}, total {summary['timings_s']['total']:.0f} s; report: {out / 'report.md'}",
        flush=True,
    )
    return summary


class _GoldWatch:
    """The RL reward: the reward model's scores. It also records the gold score of each batch of
    training samples for the report's curve; the gold never reaches the training loop."""

    name = "reward model"

    def __init__(self, scorer, gold):
        self.scorer, self.gold, self.gold_per_call = scorer, gold, []

    def __call__(self, prompts, completions):
        scores = self.scorer(prompts, completions)
        golds = self.gold(prompts, completions)
        self.gold_per_call.append(sum(golds) / max(len(golds), 1))
        return scores


def _rl_phases(cfg, phases, out, train_prompts, eval_prompts, scorer, gold, start_model, generator):
    """RL against the reward model (the same rankings' RM), then the held-out evaluation of its policy."""
    from prefloop.data.records import Prompt
    from prefloop.eval.metrics import gold_score, kl_to_reference
    from prefloop.models.load import load_causal_lm
    from prefloop.train import online
    from prefloop.train.logs import read_metrics

    watch = _GoldWatch(scorer, gold)
    settings = {
        "ppo": {"ppo_epochs": 2, "batch_size": 8, "grad_accum": 2},
        "grpo": {"batch_size": 32},
        "rloo": {"batch_size": 32},
    }[cfg.method]
    rl_cfg = online.CONFIGS[cfg.method](
        model=cfg.model,
        output_dir=str(out / cfg.method),
        reward="reward model (demo)",
        max_steps=cfg.rl_steps,
        prompts_per_step=cfg.rl_prompts_per_step,
        num_generations=cfg.rl_num_generations,
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        learning_rate=cfg.rl_lr,
        lora=True,
        kl_coef=cfg.rl_kl_coef,
        kl_in="reward",
        kl_estimator="k1",
        adaptive_kl=True,
        kl_target=cfg.rl_kl_target,
        kl_horizon=10 * cfg.rl_prompts_per_step * cfg.rl_num_generations,
        max_length=256,
        max_prompt_length=128,
        seed=cfg.seed,
        device=cfg.device,
        save_steps=0,
        report_to_tensorboard="no",
        **settings,
    )
    n = cfg.rl_prompts_per_step * cfg.rl_num_generations
    with phases.phase(
        cfg.method, f"{cfg.method.upper()} against the reward model: {cfg.rl_steps} steps x {n} replies"
    ):
        rl_path = online.train(
            rl_cfg, records=[Prompt(p) for p in train_prompts], reward=watch, algorithm=cfg.method
        )
        metrics = read_metrics(out / cfg.method)
    eval_flat = [p for p in eval_prompts for _ in range(cfg.eval_samples)]
    with phases.phase(f"{cfg.method} eval", "held-out samples of the RL policy (same seed): gold score, KL"):
        policy = load_causal_lm(str(rl_path)).to(next(start_model.parameters()).device).eval()
        completions = generator(policy).generate(eval_prompts, cfg.eval_samples, seed=cfg.seed + 1)
        after = [c.text for c in completions]
        gold_mean, golds = gold_score(gold, eval_flat, after)
        # On exactly the sampled ids, as the DPO evaluation above.
        kl, _ = kl_to_reference(
            policy, start_model, [c.prompt_token_ids for c in completions], [c.token_ids for c in completions]
        )
        rm = scorer(eval_flat, after)
        print(f"    {cfg.method}: held-out gold {gold_mean:.3f}, KL {kl:.3f} nats", flush=True)
    _write_jsonl(
        out / f"samples_{cfg.method}.jsonl",
        ({"prompt": p, "response": a, "gold": g} for p, a, g in zip(eval_flat, after, golds)),
    )
    return {
        "path": str(rl_path),
        "metrics": metrics,
        "gold_per_step": watch.gold_per_call,
        "gold": gold_mean,
        "gold_values": golds,
        "kl": kl,
        "rm_score": sum(rm) / len(rm),
    }


def _rl_report(out: Path, cfg, rl: dict, gold_start: float, gold_dpo: float, kl_dpo: float) -> dict:
    """rl.png and an RL section in report.md: curves over steps and the side-by-side with DPO."""
    from prefloop.eval.metrics import mean_and_stderr
    from prefloop.eval.plots import rl_figure

    points = {"start": (0.0, gold_start), "dpo": (kl_dpo, gold_dpo), cfg.method: (rl["kl"], rl["gold"])}
    rl_figure(out / "rl.png", rl["metrics"], rl["gold_per_step"], points, cfg.method)
    _, se = mean_and_stderr(rl["gold_values"])
    last = rl["metrics"][-1] if rl["metrics"] else {}
    lines = [
        "",
        f"## {cfg.method.upper()} against the reward model, side by side with DPO",
        "",
        f"{cfg.rl_steps} rollout steps x {cfg.rl_prompts_per_step} training prompts x {cfg.rl_num_generations} "
        f"replies, LoRA, lr {cfg.rl_lr}, KL penalty k1 in the reward, adaptive β from {cfg.rl_kl_coef} toward "
        f"{cfg.rl_kl_target} nats per reply. Reward = the MiniLM reward model above; the gold judge is only measured.",
        "",
        "| held-out prompts (same seed) | start | DPO | " + cfg.method.upper() + " |",
        "|---|---:|---:|---:|",
        f"| gold score (mean) | {gold_start:.3f} | {gold_dpo:.3f} | {rl['gold']:.3f} ± {se:.3f} |",
        f"| KL to the start model, nats per reply | 0 | {kl_dpo:.2f} | {rl['kl']:.2f} |",
        f"| reward-model score (mean) | | | {rl['rm_score']:.3f} |",
        "",
        f"Last step: β = {last.get('kl/coef', float('nan')):.4f}, training-sample KL {last.get('kl', float('nan')):.2f} nats.",
        "",
        "![RL curves](rl.png)",
        "",
    ]
    with (out / "report.md").open("a", encoding="utf-8") as f:
        f.write("\n".join(lines))
    return {
        "method": cfg.method,
        "path": rl["path"],
        "gold": rl["gold"],
        "gold_stderr": se,
        "kl_to_start": rl["kl"],
        "reward_model_score": rl["rm_score"],
        "steps": len(rl["metrics"]),
        "final_kl_coef": last.get("kl/coef"),
    }


def main(argv: list[str], command: str = "demo") -> None:
    from prefloop.config import ConfigError, parse_args
    from prefloop.data.io import DataError
    from prefloop.models.load import ModelLoadError

    cfg = parse_args(DemoConfig, argv, prog=f"prefloop {command}", description=DemoConfig.__doc__)
    try:
        run(cfg)
    except (ConfigError, DataError, ModelLoadError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
