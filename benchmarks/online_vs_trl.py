"""Side-by-side online RL benchmark: prefloop's GRPO / RLOO vs TRL's GRPOTrainer / RLOOTrainer.

The work (equal settings in both frameworks): the embedded SmolLM2-135M-Instruct, full
fine-tuning in fp32 on the CPU with 2 torch threads; every step samples 4 completions for each
of 8 prompts (32 completions, at most 32 new tokens, temperature 1, no top-k / top-p), scores
them with the VADER compound sentiment of the completion text, and takes ONE optimizer step on
all 32 (one epoch, one minibatch: TRL per_device_train_batch_size=32, steps_per_generation=1,
num_iterations=1; prefloop prompts_per_step=8, num_generations=4, batch_size=32). KL to the
frozen reference in both: GRPO β = 0.04 as a loss term (k3), loss_type "grpo" in both; RLOO
β = 0.05 in the reward (TRL's RLOO default). AdamW fused, learning rate 1e-6 constant, clipping
at 1.0, no gradient checkpointing, no evaluation, no checkpoints, logging every step.

Reported per run: s/step (steady state: mean of steps 3..N), completions/s, generation
tokens/s (sampled tokens / the generation phase's seconds), training tokens/s (prompt +
completion tokens of the step / s/step), peak RSS, and where a step's time goes: generation,
reference & old log-probs, reward, training forward + backward, optimizer (TRL: from its own
profiling contexts plus a timer around its `_generate_and_score_completions`; the optimizer is
inside "train" there).

Usage::

    python benchmarks/online_vs_trl.py                       # trl-grpo prefloop-grpo trl-rloo prefloop-rloo
    python benchmarks/online_vs_trl.py --runs prefloop-grpo prefloop-grpo-padded prefloop-grpo-lora --steps 5

Each run is its own child process (peak RSS = ru_maxrss of that process). The machine may be
shared: compare the ratios of one invocation, and the CPU seconds per step next to wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

RUNS: dict[str, tuple[str, dict]] = {
    "trl-grpo": ("trl", {"algo": "grpo"}),
    "prefloop-grpo": ("prefloop", {"algo": "grpo"}),
    "trl-rloo": ("trl", {"algo": "rloo"}),
    "prefloop-rloo": ("prefloop", {"algo": "rloo"}),
    "prefloop-grpo-padded": ("prefloop", {"algo": "grpo", "packing": False}),
    "prefloop-grpo-lora": ("prefloop", {"algo": "grpo", "lora": True}),
}
DEFAULT_RUNS = ["trl-grpo", "prefloop-grpo", "trl-rloo", "prefloop-rloo"]
DESCRIPTIONS = {
    "trl-grpo": "TRL GRPOTrainer (transformers generate), beta 0.04, loss_type grpo",
    "prefloop-grpo": "prefloop grpo (HF generate with a KV cache through the Generator seam, each prompt "
    "prefilled once and its cache shared by its 4 completions; packed training batch, each prompt computed "
    "once for its 4 completions; no separate old-log-prob pass), kl_coef 0.04",
    "trl-rloo": "TRL RLOOTrainer, beta 0.05 (KL in the reward)",
    "prefloop-rloo": "prefloop rloo, kl_coef 0.05 in the reward (needs the old-log-prob pass before the update)",
    "prefloop-grpo-padded": "prefloop grpo with --no-packing (right-padded [32, T] batches)",
    "prefloop-grpo-lora": "prefloop grpo with LoRA r=16 (reference = adapter-disabled base, no second copy)",
}
COMPARISONS = [
    ("prefloop-grpo", "trl-grpo"),
    ("prefloop-rloo", "trl-rloo"),
    ("prefloop-grpo", "prefloop-grpo-padded"),
    ("prefloop-grpo-lora", "trl-grpo"),
]
PROMPTS_PER_STEP, K = 8, 4


def prompts(n: int) -> list[list[dict]]:
    """The benchmark's prompts: the harness's how-to questions (chat messages), cycled."""
    return [p["prompt"] for p in harness.make_pairs(max(n, 64))][:n]


def vader_compound(texts: list[str]) -> list[float]:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = vader_compound.__dict__.setdefault("analyzer", SentimentIntensityAnalyzer())
    return [float(analyzer.polarity_scores(t)["compound"]) for t in texts]


# ----------------------------------------------------------------------------------------------
# Children
# ----------------------------------------------------------------------------------------------


def run_trl(args, opts: dict, workdir: Path) -> dict:
    torch = harness.setup_torch(args.threads, args.seed)
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl.extras import profiling

    timings: dict[int, dict[str, float]] = {}
    current = {"step": 0}

    def log_metrics(self, duration):  # TRL's own profiling contexts ("<Trainer>.<name>"), collected per step
        bucket = timings.setdefault(current["step"], {})
        bucket[self.name] = bucket.get(self.name, 0.0) + duration

    profiling.ProfilingContext._log_metrics = log_metrics

    def reward(prompts, completions, **kwargs):
        texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        return vader_compound(texts)

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    n_prompts = PROMPTS_PER_STEP * args.steps
    dataset = Dataset.from_list([{"prompt": p} for p in prompts(n_prompts)])
    common = dict(
        output_dir=str(workdir),
        per_device_train_batch_size=PROMPTS_PER_STEP * K,
        gradient_accumulation_steps=1,
        num_generations=K,
        max_completion_length=args.max_new_tokens,
        temperature=1.0,
        num_iterations=1,
        max_steps=args.steps,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        optim="adamw_torch_fused",
        gradient_checkpointing=False,
        bf16=False,
        fp16=False,
        use_cpu=args.device == "cpu",
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        eval_strategy="no",
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=args.seed,
        shuffle_dataset=False,
    )
    if opts["algo"] == "grpo":
        from trl import GRPOConfig, GRPOTrainer

        config = GRPOConfig(**common, beta=0.04, loss_type="grpo")
        trainer_cls = GRPOTrainer
    else:
        from trl import RLOOConfig, RLOOTrainer

        config = RLOOConfig(**common, beta=0.05)
        trainer_cls = RLOOTrainer
    marks: list[tuple[float, float]] = []
    logs: dict[int, dict] = {}
    mark = harness.marker(torch, args.device, marks)

    class Timer(TrainerCallback):
        def on_train_begin(self, *a, **k):
            mark()

        def on_step_begin(self, _args, state, *a, **k):
            current["step"] = state.global_step + 1

        def on_step_end(self, *a, **k):
            mark()

        def on_log(self, _args, state, _control, logs_=None, **k):
            logs_ = k.get("logs", logs_)
            if logs_:
                logs.setdefault(state.global_step, {}).update(
                    {a: b for a, b in logs_.items() if isinstance(b, (int, float))}
                )

    t0 = time.perf_counter()
    trainer = trainer_cls(
        model=model,
        reward_funcs=reward,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[Timer()],
    )
    original = trainer._generate_and_score_completions

    def timed_scoring(*a, **k):
        start = time.perf_counter()
        out = original(*a, **k)
        bucket = timings.setdefault(current["step"], {})
        bucket["scoring_total"] = bucket.get("scoring_total", 0.0) + time.perf_counter() - start
        return out

    trainer._generate_and_score_completions = timed_scoring
    setup_s = time.perf_counter() - t0
    trainer.train()
    steps = len(marks) - 1
    per_step = []
    for i in range(1, steps + 1):
        t = timings.get(i, {})
        gen = sum(v for k, v in t.items() if k.endswith("transformers.generate"))
        rew = sum(v for k, v in t.items() if k.endswith("_calculate_rewards"))
        lengths = logs.get(i, {}).get("completions/mean_length")
        per_step.append(
            {
                "generate_s": gen,
                "reward_s": rew,
                "logprobs_s": max(0.0, t.get("scoring_total", 0.0) - gen - rew),
                "generated_tokens": lengths * PROMPTS_PER_STEP * K if lengths is not None else None,
            }
        )
    losses = [logs.get(i + 1, {}).get("loss") for i in range(steps)]
    return harness.timed_result(marks, losses, setup_s=setup_s, phases=per_step)


def run_prefloop(args, opts: dict, workdir: Path) -> dict:
    torch = harness.setup_torch(args.threads, args.seed)
    from prefloop.data.records import Prompt
    from prefloop.train import online

    def reward(prompts, completions):
        return vader_compound(list(completions))

    cls = online.GRPOConfig if opts["algo"] == "grpo" else online.RLOOConfig
    extra = {"loss_type": "grpo", "kl_coef": 0.04} if opts["algo"] == "grpo" else {"kl_coef": 0.05}
    cfg = cls(
        model=args.model,
        output_dir=str(workdir),
        max_steps=args.steps,
        prompts_per_step=PROMPTS_PER_STEP,
        num_generations=K,
        batch_size=PROMPTS_PER_STEP * K,
        grad_accum=1,
        ppo_epochs=1,
        max_new_tokens=args.max_new_tokens,
        temperature=1.0,
        gen_batch_size=PROMPTS_PER_STEP * K,
        learning_rate=args.lr,
        lr_scheduler="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        gradient_checkpointing=False,
        lora=bool(opts.get("lora")),
        packing=opts.get("packing", True),
        device=args.device,
        seed=args.seed,
        logging_steps=1,
        save_steps=0,
        report_to_tensorboard="no",
        epochs=1000,
        **extra,
    )
    records = [Prompt(p) for p in prompts(PROMPTS_PER_STEP * args.steps)]
    marks: list[tuple[float, float]] = []
    harness.time_prefloop(harness.marker(torch, args.device, marks))
    online.train(cfg, records=records, reward=reward, algorithm=opts["algo"])
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    per_step = [
        {
            "generate_s": r["time/generate_s"],
            "reward_s": r["time/reward_s"],
            "logprobs_s": r["time/logprobs_s"],
            "train_s": r["time/train_forward_backward_s"],
            "optimizer_s": r["time/optimizer_s"],
            "generated_tokens": r["generated_tokens"],
        }
        for r in rows
    ]
    return harness.timed_result(marks, [r["loss"] for r in rows], phases=per_step)


# ----------------------------------------------------------------------------------------------
# Parent
# ----------------------------------------------------------------------------------------------


def prompt_tokens_per_step(model_dir: str) -> float:
    """Mean prompt tokens (chat template applied) x 32 sequences: the prompt part of a step's training tokens."""
    from prefloop.data.tokenize import encode_prompt
    from prefloop.models.load import load_tokenizer

    tok = load_tokenizer(model_dir)
    ps = prompts(64)
    return sum(len(encode_prompt(tok, p)) for p in ps) / len(ps) * PROMPTS_PER_STEP * K


def summarize(name: str, raw: dict, prompt_tokens: float) -> dict:
    s = harness.steady_mean(raw["step_times_s"])
    cpu = harness.steady_mean(raw["step_cpu_s"]) if raw.get("step_cpu_s") else None
    phases = raw["phases"][2:] or raw["phases"]
    mean = lambda key: sum(p.get(key) or 0.0 for p in phases) / len(phases)  # noqa: E731
    gen_s, gen_tokens = mean("generate_s"), mean("generated_tokens")
    breakdown = {k: mean(k) for k in ("generate_s", "logprobs_s", "reward_s", "train_s", "optimizer_s")}
    if not any(p.get("train_s") for p in phases):  # TRL: the rest of the step is the update
        breakdown["train_s"] = max(
            0.0, s - breakdown["generate_s"] - breakdown["logprobs_s"] - breakdown["reward_s"]
        )
        breakdown["optimizer_s"] = None
    row = {
        "run": name,
        "s_per_step": s,
        "cpu_s_per_step": cpu,
        "completions_per_s": PROMPTS_PER_STEP * K / s,
        "generation_tokens_per_s": gen_tokens / gen_s if gen_s else None,
        "generated_tokens_per_step": gen_tokens,
        "training_tokens_per_s": (prompt_tokens + gen_tokens) / s,
        "peak_rss_mb": raw["peak_rss_mb"],
        "peak_rss_train_mb": raw.get("peak_rss_train_mb"),
        "breakdown_s": breakdown,
        "step_times_s": raw["step_times_s"],
        "losses": raw["losses"],
        "wall_s": raw.get("wall_s"),
    }
    print(
        f"[bench] {name}: {s:.2f} s/step, {row['completions_per_s']:.2f} completions/s, "
        f"peak RSS {row['peak_rss_mb']:.0f} MiB, breakdown {json.dumps({k: round(v, 2) if v else v for k, v in breakdown.items()})}",
        flush=True,
    )
    return row


def markdown(rows: dict, args) -> str:
    lines = [
        "# Online RL: prefloop vs TRL (GRPO, RLOO)",
        "",
        f"SmolLM2-135M-Instruct, fp32, {args.threads} threads, {PROMPTS_PER_STEP} prompts x {K} completions per step, "
        f"<= {args.max_new_tokens} new tokens, reward = VADER compound, {args.steps} steps (steady state: steps 3..N).",
        "",
        "| run | s/step | CPU s/step | completions/s | gen tokens/s | train tokens/s | peak RSS (MiB) | generate | ref+old logps | reward | fwd+bwd | optimizer |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def f(v, fmt="{:.2f}"):
        return fmt.format(v) if v is not None else "-"

    for r in rows.values():
        b = r["breakdown_s"]
        opt = f(b["optimizer_s"]) if b.get("optimizer_s") is not None else "(in fwd+bwd)"
        lines.append(
            f"| {r['run']} | {f(r['s_per_step'])} | {f(r['cpu_s_per_step'])} | {f(r['completions_per_s'])} | "
            f"{f(r['generation_tokens_per_s'], '{:.0f}')} | {f(r['training_tokens_per_s'], '{:.0f}')} | "
            f"{f(r['peak_rss_mb'], '{:.0f}')} | {f(b['generate_s'])} | {f(b['logprobs_s'])} | {f(b['reward_s'])} | "
            f"{f(b['train_s'])} | {opt} |"
        )
    lines.append("")
    for ours, theirs in COMPARISONS:
        if ours in rows and theirs in rows:
            a, b = rows[ours], rows[theirs]
            cpu = ""
            if a["cpu_s_per_step"] and b["cpu_s_per_step"]:
                cpu = f", CPU time per step ×{b['cpu_s_per_step'] / a['cpu_s_per_step']:.2f} less"
            lines.append(
                f"- {ours} / {theirs}: completions/s ×{a['completions_per_s'] / b['completions_per_s']:.2f}, "
                f"peak RSS ×{a['peak_rss_mb'] / b['peak_rss_mb']:.2f}{cpu}"
            )
    lines += ["", "Runs:"] + [f"- `{k}`: {v}" for k, v in DESCRIPTIONS.items() if k in rows]
    return "\n".join(lines) + "\n"


def child_flags(args) -> list[str]:
    return [
        *("--model", args.model, "--steps", str(args.steps), "--max-new-tokens", str(args.max_new_tokens)),
        *(
            "--lr",
            str(args.lr),
            "--threads",
            str(args.threads),
            "--seed",
            str(args.seed),
            "--device",
            args.device,
        ),
    ]


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", nargs="+", default=DEFAULT_RUNS, help=f"runs to do, from {list(RUNS)}")
    p.add_argument("--model", default=None, help="model dir (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-6)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--tag", default="cpu", help="results file suffix: results/online_<tag>.json|md")
    p.add_argument("--results-dir", default=str(harness.RESULTS))
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--json-out", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.model is None:
        from prefloop.models.default import default_model_dir

        args.model = str(default_model_dir())
    if args.child:
        framework, opts = RUNS[args.child]
        harness.child_main({"trl": run_trl, "prefloop": run_prefloop}[framework], args, opts, args.child)
        return
    unknown = [n for n in args.runs if n not in RUNS]
    if unknown:
        raise SystemExit(f"unknown runs {unknown}; choose from {list(RUNS)}")
    prompt_tokens = prompt_tokens_per_step(args.model)
    rows: dict[str, dict] = {}
    for name in args.runs:
        raw = harness.run_child(__file__, name, child_flags(args), args.threads, args.verbose)
        rows[name] = summarize(name, raw, prompt_tokens)
        text = markdown(rows, args)
        if not args.no_write:
            result = {"settings": vars(args), "versions": harness.versions(), "rows": rows}
            harness.write_results(args.results_dir, f"online_{args.tag}", result, text)
    print(markdown(rows, args))


if __name__ == "__main__":
    main()
