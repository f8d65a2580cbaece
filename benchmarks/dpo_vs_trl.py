"""Side-by-side DPO benchmark: prefloop's offline preference loop vs TRL's DPOTrainer.

Both frameworks train the same model (the embedded SmolLM2-135M-Instruct by default) on the
same 64 preference pairs (generated here, deterministically) with the same settings: batch 8,
max length 128, full fine-tuning, sigmoid DPO with beta 0.1, the same learning rate and
optimizer, reference log-probs precomputed before training, no gradient checkpointing, no
evaluation, dataloader workers 0 and 2 torch threads.

Each run is a child process of its own (``--child NAME``), so peak RSS
(``getrusage(RUSAGE_SELF).ru_maxrss``) belongs to that framework alone. Step times come from
prefloop's ``metrics.jsonl`` (``step_time_s``) and from a ``TrainerCallback`` for TRL; the
steady state is the mean of steps 3..N (steps 1-2 carry one-time warm-up work). Step-1 losses
must both be ln 2: at step 1 the policy equals the reference, so every log-ratio is 0.

Usage::

    python benchmarks/dpo_vs_trl.py                 # all runs, CPU fp32, writes benchmarks/results/
    python benchmarks/dpo_vs_trl.py --runs trl prefloop --steps 8
    python benchmarks/dpo_vs_trl.py --device cuda --dtype bf16 --tag gpu

The runs are done back to back in one invocation because the machine is shared and noisy:
compare ratios from the same invocation, not absolute numbers across invocations.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
LN2 = math.log(2.0)

# ----------------------------------------------------------------------------------------------
# Data: 64 short chat turns, each with a helpful (chosen) and an unhelpful (rejected) reply.
# ----------------------------------------------------------------------------------------------

_TOPICS = [
    ("boil an egg", "Put the egg in boiling water for nine minutes, then cool it in cold water."),
    ("water a cactus", "Water it deeply once every two or three weeks and let the soil dry out in between."),
    ("sleep better", "Keep a regular bedtime, avoid screens for an hour before bed and keep the room cool."),
    ("learn to juggle", "Start with one ball, throw it in an arc from hand to hand, then add a second ball."),
    (
        "clean a cast iron pan",
        "Rinse it with hot water, scrub with salt, dry it on the stove and oil it lightly.",
    ),
    (
        "write a cover letter",
        "Open with the role you want, show two results that fit it and close with a clear ask.",
    ),
    ("save money on groceries", "Plan meals for the week, shop with a list and buy staples in bulk."),
    (
        "start running",
        "Alternate one minute of running with two of walking, three times a week, and build up.",
    ),
    (
        "fix a squeaky door",
        "Lift the hinge pin, coat it with a little oil or petroleum jelly and tap it back in.",
    ),
    ("remember names", "Repeat the name when you hear it, link it to a picture and use it once in the talk."),
    ("brew green tea", "Use water at about eighty degrees and steep the leaves for two minutes."),
    ("read more books", "Carry a book everywhere and read ten pages before you look at your phone."),
    (
        "keep basil alive",
        "Give it six hours of sun, water when the top of the soil is dry and pinch the tips.",
    ),
    (
        "prepare for an interview",
        "Research the company, practise three stories about your work and prepare questions.",
    ),
    (
        "study for an exam",
        "Test yourself with old questions, space the sessions out and sleep well before it.",
    ),
    ("make a budget", "List your income, subtract fixed costs, then give every remaining euro a job."),
]
_OPENERS = ["How do I", "What is the best way to", "Can you tell me how to", "Any tips to"]
_EXTRAS = [
    "",
    " Doing it this way is simple and it works for most people.",
    " Take your time at first; it gets easier after a few tries, and small steady steps beat big ones.",
    " If something goes wrong, go back one step, check what changed, and try again calmly the next day.",
]
_UNHELPFUL = [
    "I don't know.",
    "Figure it out yourself.",
    "Why would you even want to do that?",
    "That is not something I can talk about right now, sorry.",
]


def make_pairs(n: int = 64, seed: int = 0) -> list[dict]:
    """`n` preference pairs in TRL's conversational format (prompt/chosen/rejected message lists).

    Deterministic for a given seed; lengths vary (about 40 to 110 tokens per sequence with the
    chat template) so that padding to the longest in a batch differs from padding to 128.
    """
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        task, answer = _TOPICS[i % len(_TOPICS)]
        opener = _OPENERS[(i // len(_TOPICS)) % len(_OPENERS)]
        extra = rng.choice(_EXTRAS)
        pairs.append(
            {
                "prompt": [{"role": "user", "content": f"{opener} {task}?"}],
                "chosen": [{"role": "assistant", "content": answer + extra}],
                "rejected": [{"role": "assistant", "content": rng.choice(_UNHELPFUL)}],
            }
        )
    return pairs


def to_prefloop_records(pairs: list[dict]):
    """The same pairs as prefloop PreferencePair records (prompt messages, reply strings)."""
    from prefloop.data.records import PreferencePair

    return [
        PreferencePair(
            prompt=p["prompt"], chosen=p["chosen"][0]["content"], rejected=p["rejected"][0]["content"]
        )
        for p in pairs
    ]


# ----------------------------------------------------------------------------------------------
# Children: one framework per process.
# ----------------------------------------------------------------------------------------------

# name -> (framework, options). "Equal settings" rows first; the rest show what else is bought.
RUNS: dict[str, tuple[str, dict]] = {
    "trl": ("trl", {"precompute_ref": True}),
    "prefloop": ("prefloop", {}),
    "trl-liveref": ("trl", {"precompute_ref": False}),
    "prefloop-lora": ("prefloop", {"lora": True}),
    "trl-pad128": ("trl", {"precompute_ref": True, "pad_to_max": True}),
    "prefloop-pad128": ("prefloop", {"pad_to_max": True}),
}
DEFAULT_RUNS = ["trl", "prefloop", "trl-liveref", "prefloop-lora"]


def _setup_torch(threads: int, seed: int):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    return torch


def _torch_dtype(torch, name: str):
    return {"fp32": torch.float32, "bf16": torch.bfloat16}[name]


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_trl(args, opts: dict, workdir: Path) -> dict:
    """Train with TRL's DPOTrainer; returns per-step times and losses."""
    torch = _setup_torch(args.threads, args.seed)
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    dtype = _torch_dtype(torch, args.dtype)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Full bf16 weights when asked (the same as prefloop's dtype flag); no autocast on top.
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype)
    dataset = Dataset.from_list(make_pairs(args.pairs, args.seed))

    config = DPOConfig(
        output_dir=str(workdir),
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=1,
        max_steps=args.steps,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=args.max_grad_norm,
        optim=args.trl_optim,
        beta=0.1,
        loss_type=["sigmoid"],
        max_length=args.max_length,
        # 128 pads every sequence to max_length (prefloop's --pad-to-max-length); None: longest in batch.
        pad_to_multiple_of=args.max_length if opts.get("pad_to_max", args.pad_to_max) else None,
        precompute_ref_log_probs=opts["precompute_ref"],
        precompute_ref_batch_size=args.batch_size,
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
    )

    marks: list[tuple[float, float]] = []
    losses: dict[int, float] = {}
    mark = _marker(torch, args.device, marks)

    class Timer(TrainerCallback):
        """Wall-clock and CPU time between consecutive optimizer steps (the first from train begin)."""

        def on_train_begin(self, *a, **k):
            mark()

        def on_step_end(self, *a, **k):
            mark()

        def on_log(self, _args, state, _control, logs=None, **k):
            if logs and "loss" in logs:
                losses[state.global_step] = float(logs["loss"])

    t0 = time.perf_counter()
    trainer = DPOTrainer(
        model=model, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=[Timer()]
    )
    setup_s = time.perf_counter() - t0
    trainer.train()
    ds = trainer.train_dataset
    tokens = sum(len(r["prompt_ids"]) * 2 + len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in ds)
    return {
        **_step_deltas(marks),
        "train_window": (marks[0][0], marks[-1][0]),
        "losses": [losses.get(i + 1) for i in range(len(marks) - 1)],
        "setup_s": setup_s,
        "tokens_per_epoch": tokens,
    }


def _marker(torch, device: str, marks: list):
    """A function that appends (wall time, process CPU time) to `marks`, after a CUDA sync."""

    def mark():
        if device == "cuda":
            torch.cuda.synchronize()
        marks.append((time.perf_counter(), time.process_time()))

    return mark


def _step_deltas(marks: list[tuple[float, float]]) -> dict:
    """Per-step wall and CPU seconds from consecutive marks (train start, then each step end).

    CPU time (all threads of the process) is reported next to wall time because the machine is
    shared: other processes stretch wall time, much less the CPU time the step itself needs.
    """
    return {
        "step_times_s": [b[0] - a[0] for a, b in itertools.pairwise(marks)],
        "step_cpu_s": [b[1] - a[1] for a, b in itertools.pairwise(marks)],
    }


def run_prefloop(args, opts: dict, workdir: Path) -> dict:
    """Train with prefloop's offline preference loop; returns per-step times and losses."""
    _setup_torch(args.threads, args.seed)
    from prefloop.train import preference

    if opts.get("pad_to_max", args.pad_to_max):
        _force_padding(args.max_length)
    cfg = preference.PreferenceConfig(
        model=args.model,
        output_dir=str(workdir),
        loss="dpo",
        beta=0.1,
        max_steps=args.steps,
        batch_size=args.batch_size,
        grad_accum=1,
        learning_rate=args.lr,
        lr_scheduler="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=args.max_grad_norm,
        max_length=args.max_length,
        max_prompt_length=args.max_prompt_length,
        precompute_ref=True,
        gradient_checkpointing=False,
        lora=bool(opts.get("lora")),
        dtype={"fp32": "float32", "bf16": "bfloat16"}[args.dtype],
        device=args.device,
        seed=args.seed,
        logging_steps=1,
        save_steps=0,
        eval_fraction=0.0,
        report_to_tensorboard="no",
    )
    records = to_prefloop_records(make_pairs(args.pairs, args.seed))
    # Time steps exactly as for TRL: marks after setup (start_run) and after each optimizer step.
    import torch

    from prefloop.train.run import Run

    marks: list[tuple[float, float]] = []
    mark = _marker(torch, args.device, marks)
    start_run, step_done = preference.start_run, Run.step_done

    def timed_start_run(*a, **k):
        run = start_run(*a, **k)
        mark()
        return run

    def timed_step_done(self, *a, **k):
        step_done(self, *a, **k)
        mark()

    preference.start_run = timed_start_run
    Run.step_done = timed_step_done
    t0 = time.perf_counter()
    preference.train(cfg, records)
    total_s = time.perf_counter() - t0
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = sorted((r for r in rows if "step_time_s" in r), key=lambda r: r["step"])
    deltas = _step_deltas(marks)
    return {
        **deltas,
        "train_window": (marks[0][0], marks[-1][0]),
        "own_step_time_s": [float(r["step_time_s"]) for r in rows],  # prefloop's metrics.jsonl
        "losses": [float(r["loss"]) for r in rows],
        "setup_s": total_s - sum(deltas["step_times_s"]),
        "tokens_per_step": [r.get("tokens") for r in rows],
    }


def _force_padding(width: int) -> None:
    """Make prefloop pad every batch to `width` (the benchmark's stand-in for padding to max length).

    prefloop pads to the longest sequence in a batch; this wraps `pad_batch` with
    pad_to_multiple_of=width, which for sequences of at most `width` tokens pads to exactly width.
    """
    from prefloop.data import tokenize

    original = tokenize.pad_batch

    def padded(seqs, pad_id, pad_to_multiple_of=None):
        return original(seqs, pad_id, pad_to_multiple_of=width)

    tokenize.pad_batch = padded


class RssSampler:
    """Samples this process's RSS every `interval` s in a thread, so the peak can be placed in a phase.

    ru_maxrss gives only the peak of the whole process; the sampler tells whether it happens while
    loading, precomputing the reference, training or saving.
    """

    def __init__(self, interval: float = 0.05):
        import threading

        import psutil

        self.proc, self.interval = psutil.Process(), interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), self.proc.memory_info().rss / 2**20))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def peak_between(self, start: float, end: float) -> float | None:
        inside = [rss for t, rss in self.samples if start <= t <= end]
        return max(inside) if inside else None


def child_main(args) -> None:
    """Run one framework and write its measurements as JSON to args.json_out."""
    framework, opts = RUNS[args.child]
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{args.child}-"))
    fn = {"trl": run_trl, "prefloop": run_prefloop}[framework]
    sampler = RssSampler()
    out = fn(args, opts, workdir)
    sampler.stop()
    out["peak_rss_mb"] = peak_rss_mb()
    # Peak while training (first to last step mark) vs the whole process (load, precompute, save).
    train_start, train_end = out.pop("train_window")
    out["peak_rss_train_mb"] = sampler.peak_between(train_start, train_end)
    out["rss_before_train_mb"] = sampler.peak_between(0.0, train_start)
    if args.device == "cuda":
        import torch

        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    Path(args.json_out).write_text(json.dumps(out))


# ----------------------------------------------------------------------------------------------
# Parent: run the children back to back, summarize, write results.
# ----------------------------------------------------------------------------------------------


def summarize(name: str, raw: dict, args) -> dict:
    """Steady-state s/step (mean of steps 3..N), pairs/s and the step-1 loss of one run."""
    times = raw["step_times_s"]
    steady = times[2:] if len(times) > 2 else times
    s_per_step = sum(steady) / len(steady)
    cpu = raw.get("step_cpu_s") or []
    cpu_steady = cpu[2:] if len(cpu) > 2 else cpu
    row = {
        "run": name,
        "framework": RUNS[name][0],
        "s_per_step": s_per_step,
        "cpu_s_per_step": sum(cpu_steady) / len(cpu_steady) if cpu_steady else None,
        "step_cpu_s": cpu,
        "pairs_per_s": args.batch_size / s_per_step,
        "peak_rss_mb": raw["peak_rss_mb"],
        "step1_loss": raw["losses"][0] if raw["losses"] else None,
        "steps": len(times),
        "step_times_s": times,
        "losses": raw["losses"],
        "setup_s": raw.get("setup_s"),
    }
    for key in ("peak_cuda_mb", "peak_rss_train_mb", "rss_before_train_mb"):
        if raw.get(key) is not None:
            row[key] = raw[key]
    return row


def run_child(name: str, args) -> dict:
    """Run one benchmark child and return its summarized row."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out_path = f.name
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--json-out", out_path]
    cmd += child_flags(args)
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS=str(args.threads),
        MKL_NUM_THREADS=str(args.threads),
        TQDM_DISABLE="1",
        PYTHONWARNINGS="ignore",
    )
    print(f"[bench] {name}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=not args.verbose, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or "")[-4000:] if not args.verbose else ""
        raise SystemExit(f"[bench] {name} failed (exit {proc.returncode}):\n{tail}")
    raw = json.loads(Path(out_path).read_text())
    os.unlink(out_path)
    row = summarize(name, raw, args)
    row["wall_s"] = time.perf_counter() - t0
    print(
        f"[bench] {name}: {row['s_per_step']:.2f} s/step (CPU {row['cpu_s_per_step']:.2f} s), "
        f"{row['pairs_per_s']:.2f} pairs/s, "
        f"peak RSS {row['peak_rss_mb']:.0f} MiB (training steps {row.get('peak_rss_train_mb') or 0:.0f}, "
        f"before training {row.get('rss_before_train_mb') or 0:.0f}), step-1 loss {row['step1_loss']:.4f}, "
        f"steps {[round(t, 2) for t in row['step_times_s']]}",
        flush=True,
    )
    return row


def child_flags(args) -> list[str]:
    """The shared settings, passed on to a child."""
    return [
        "--model",
        args.model,
        "--steps",
        str(args.steps),
        "--batch-size",
        str(args.batch_size),
        "--max-length",
        str(args.max_length),
        "--max-prompt-length",
        str(args.max_prompt_length),
        "--lr",
        str(args.lr),
        "--max-grad-norm",
        str(args.max_grad_norm),
        "--trl-optim",
        args.trl_optim,
        "--pairs",
        str(args.pairs),
        "--threads",
        str(args.threads),
        "--seed",
        str(args.seed),
        "--device",
        args.device,
        "--dtype",
        args.dtype,
    ] + (["--pad-to-max"] if args.pad_to_max else [])


def ratios(rows: dict[str, dict], ours: str, theirs: str) -> dict:
    """prefloop/TRL throughput and memory ratios between two runs."""
    a, b = rows[ours], rows[theirs]
    out = {
        "ours": ours,
        "theirs": theirs,
        "throughput_ratio": a["pairs_per_s"] / b["pairs_per_s"],
        "memory_ratio": a["peak_rss_mb"] / b["peak_rss_mb"],
    }
    if a.get("cpu_s_per_step") and b.get("cpu_s_per_step"):
        out["cpu_time_ratio"] = b["cpu_s_per_step"] / a["cpu_s_per_step"]
    if "peak_cuda_mb" in a and "peak_cuda_mb" in b:
        out["cuda_memory_ratio"] = a["peak_cuda_mb"] / b["peak_cuda_mb"]
    return out


def markdown(result: dict) -> str:
    """The results as a Markdown table plus the ratios."""
    s = result["settings"]
    lines = [
        f"DPO on {s['model_name']}, {s['pairs']} pairs, batch {s['batch_size']}, max length {s['max_length']}, "
        f"{s['dtype']} on {s['device']} ({s['threads']} torch threads), {s['steps']} steps; "
        f"steady state = mean of steps 3..{s['steps']}.",
        "",
        "| run | s/step (wall) | CPU s/step | pairs/s | peak RSS (MiB) | peak RSS in steps (MiB) |"
        + (" peak CUDA (MiB) |" if s["device"] == "cuda" else "")
        + " step-1 loss |",
        "| --- | ---: | ---: | ---: | ---: | ---: |"
        + (" ---: |" if s["device"] == "cuda" else "")
        + " ---: |",
    ]
    for row in result["rows"]:
        cuda = f" {row['peak_cuda_mb']:.0f} |" if s["device"] == "cuda" else ""
        cpu = f"{row['cpu_s_per_step']:.2f}" if row.get("cpu_s_per_step") is not None else "-"
        in_steps = f"{row['peak_rss_train_mb']:.0f}" if row.get("peak_rss_train_mb") else "-"
        lines.append(
            f"| {row['run']} | {row['s_per_step']:.2f} | {cpu} | {row['pairs_per_s']:.2f} | "
            f"{row['peak_rss_mb']:.0f} | {in_steps} |{cuda} {row['step1_loss']:.4f} |"
        )
    lines.append("")
    for r in result["ratios"]:
        extra = f", CUDA memory ×{r['cuda_memory_ratio']:.2f}" if "cuda_memory_ratio" in r else ""
        if "cpu_time_ratio" in r:
            extra = f", CPU-time throughput ×{r['cpu_time_ratio']:.2f}" + extra
        lines.append(
            f"- {r['ours']} / {r['theirs']}: throughput ×{r['throughput_ratio']:.2f}, "
            f"peak RSS ×{r['memory_ratio']:.2f}{extra}"
        )
    lines.append("")
    lines.append("Run descriptions:")
    for name, text in result["descriptions"].items():
        lines.append(f"- `{name}`: {text}")
    return "\n".join(lines) + "\n"


DESCRIPTIONS = {
    "trl": "TRL DPOTrainer, reference log-probs precomputed (precompute_ref_log_probs=True), pad to longest in batch",
    "trl-liveref": "TRL DPOTrainer with its default live reference model (a second copy in memory, "
    "one extra forward per step)",
    "trl-pad128": "TRL DPOTrainer, precomputed reference, every sequence padded to max length "
    "(pad_to_multiple_of=128)",
    "prefloop": "prefloop preference loop (dpo), full fine-tuning, reference precomputed (its default)",
    "prefloop-lora": "prefloop with LoRA (r=16, alpha=32); reference = adapter-disabled base",
    "prefloop-pad128": "prefloop made to pad every sequence to max length (pad_batch wrapped by the benchmark)",
}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", nargs="+", default=DEFAULT_RUNS, help=f"runs to do, from {list(RUNS)}")
    p.add_argument("--model", default=None, help="model dir (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--max-prompt-length", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-6)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument(
        "--trl-optim", default="adamw_torch_fused", help="TRL optimizer name (prefloop uses fused AdamW)"
    )
    p.add_argument("--pairs", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--pad-to-max", action="store_true", help="pad every sequence to max length in all runs")
    p.add_argument("--tag", default="cpu", help="results file suffix: results/dpo_<tag>.json|md")
    p.add_argument("--results-dir", default=str(RESULTS), help="where dpo_<tag>.json|md are written")
    p.add_argument(
        "--random-weights",
        action="store_true",
        help="train a seeded random init of --model's architecture (needs only its config and "
        "tokenizer files; for machines where the weights cannot be carried)",
    )
    p.add_argument("--no-write", action="store_true", help="print only, write no results files")
    p.add_argument("--verbose", action="store_true", help="show the children's output")
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
        child_main(args)
        return
    if args.random_weights:
        args.model = str(random_init_copy(args.model, args.seed))
    for name in args.runs:
        if name not in RUNS:
            raise SystemExit(f"unknown run {name!r}; choose from {list(RUNS)}")
    rows: dict[str, dict] = {}
    for name in args.runs:  # results are rewritten after every run, so a cut-short invocation keeps its rows
        rows[name] = run_child(name, args)
        report(rows, args)
    bad = [n for n, r in rows.items() if abs(r["step1_loss"] - LN2) > 2e-3]
    if bad:
        raise SystemExit(f"[bench] step-1 loss differs from ln 2 = {LN2:.5f} in: {bad}")


COMPARISONS = [
    ("prefloop", "trl"),
    ("prefloop", "trl-liveref"),
    ("prefloop-lora", "trl"),
    ("prefloop-pad128", "trl-pad128"),
    ("prefloop", "prefloop-pad128"),
]


def report(rows: dict[str, dict], args) -> None:
    """Print the table and (unless --no-write) write results/dpo_<tag>.json and .md."""
    result = {
        "settings": {
            "model": args.model,
            "model_name": Path(args.model).name,
            "pairs": args.pairs,
            "batch_size": args.batch_size,
            "max_length": args.max_length,
            "max_prompt_length": args.max_prompt_length,
            "steps": args.steps,
            "lr": args.lr,
            "beta": 0.1,
            "loss": "sigmoid DPO",
            "max_grad_norm": args.max_grad_norm,
            "trl_optim": args.trl_optim,
            "threads": args.threads,
            "device": args.device,
            "dtype": args.dtype,
            "pad_to_max": args.pad_to_max,
            "seed": args.seed,
            "random_weights": args.random_weights,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "versions": versions(),
            "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        },
        "rows": list(rows.values()),
        "ratios": [ratios(rows, a, b) for a, b in COMPARISONS if a in rows and b in rows],
        "descriptions": {k: v for k, v in DESCRIPTIONS.items() if k in rows},
    }
    text = markdown(result)
    print(text, flush=True)
    if not args.no_write:
        results = Path(args.results_dir)
        results.mkdir(parents=True, exist_ok=True)
        (results / f"dpo_{args.tag}.json").write_text(json.dumps(result, indent=2) + "\n")
        (results / f"dpo_{args.tag}.md").write_text(text)
        print(f"[bench] wrote {results / f'dpo_{args.tag}.json'} and .md", flush=True)


def random_init_copy(model_dir: str, seed: int) -> Path:
    """A model dir with `model_dir`'s config and tokenizer and seeded random weights (saved once).

    Throughput and memory depend on the architecture, not on the weight values, and the step-1
    loss is ln 2 for any weights (policy == reference), so this keeps the benchmark meaningful.
    """
    import shutil

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    src = Path(model_dir)
    dst = Path(tempfile.mkdtemp(prefix="bench-random-model-"))
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(src), dtype=torch.float32)
    model.save_pretrained(dst)
    for f in src.iterdir():
        if f.is_file() and (
            f.name.startswith("tokenizer")
            or f.name in ("chat_template.jinja", "special_tokens_map.json", "generation_config.json")
        ):
            shutil.copy(f, dst / f.name)
    return dst


def versions() -> dict:
    """Versions of the libraries that matter for the numbers."""
    import importlib.metadata as md

    out = {}
    for dist in ("torch", "transformers", "trl", "peft", "accelerate", "prefloop"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    return out


if __name__ == "__main__":
    main()
