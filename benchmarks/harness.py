"""What the side-by-side benchmarks share: the data, child processes, timing, memory, FLOPs, tables.

Every benchmark (`dpo_vs_trl.py`, `reward_vs_trl.py`, `sft_vs_trl.py`) runs each framework in a
child process of its own (so peak RSS belongs to one framework), times optimizer steps from
outside the loops' own code (a `TrainerCallback` for TRL, a wrapper around prefloop's step end),
and summarises them the same way:

- s/step: mean wall time of steps 3..N (steps 1-2 carry one-time warm-up work);
- examples/s and tokens/s: examples per step / s/step, and the tokens of those examples (the
  non-padding tokens of each sequence as tokenized, whatever a framework pads or shares);
- peak RSS: `getrusage(RUSAGE_SELF).ru_maxrss` of the child (load, setup and training);
- share of peak: the useful FLOPs of a step (below) / s/step / the machine's fp32 matmul peak,
  measured in the same invocation with a large matrix product on the same number of threads.

Useful FLOPs of one training step (`train_flops`): 3 × the forward FLOPs (forward + backward,
which is twice the forward) of every sequence on its own, unpadded, with no prefix shared:
2 × (weights of the blocks' linear layers) per token, the attention score and value products
(causal: 2·d·n(n+1) per layer for n tokens; bidirectional 4·d·n²), and for a language model
the LM head at the positions that carry loss. Padding, a prompt computed twice and recomputed
activations are not useful work, so a framework that skips them reaches a higher share.
"""

from __future__ import annotations

import itertools
import json
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


def encode_pairs(model_dir: str, pairs: list[dict], max_length: int, max_prompt_length: int) -> list[tuple]:
    """(chosen, rejected) `TokenizedSequence`s of every pair, as prefloop tokenizes them.

    The reward and SFT benchmarks hand TRL these very token ids (pre-tokenized datasets), so both
    frameworks train on identical sequences.
    """
    from prefloop.data.tokenize import encode
    from prefloop.models.load import load_tokenizer

    tok = load_tokenizer(model_dir)
    out = []
    for p in pairs:
        reply = [p["chosen"][0]["content"], p["rejected"][0]["content"]]
        out.append(tuple(encode(tok, p["prompt"], r, max_length, max_prompt_length) for r in reply))
    return out


# ----------------------------------------------------------------------------------------------
# Inside a child: threads, timing, memory.
# ----------------------------------------------------------------------------------------------


def setup_torch(threads: int, seed: int):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    return torch


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def marker(torch, device: str, marks: list):
    """A function that appends (wall time, process CPU time, system CPU time) to `marks`, after a CUDA sync."""

    def mark():
        if device == "cuda":
            torch.cuda.synchronize()
        marks.append(
            (time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_stime)
        )

    return mark


def step_deltas(marks: list[tuple[float, ...]]) -> dict:
    """Per-step wall and CPU seconds from consecutive marks (train start, then each step end).

    CPU time (all threads of the process) is reported next to wall time because the machine is
    shared: other processes stretch wall time, much less the CPU time the step itself needs.
    """
    return {
        "step_times_s": [b[0] - a[0] for a, b in itertools.pairwise(marks)],
        "step_cpu_s": [b[1] - a[1] for a, b in itertools.pairwise(marks)],
        "step_system_s": [b[2] - a[2] for a, b in itertools.pairwise(marks)],
    }


def trl_timer(mark, losses: dict):
    """A TrainerCallback marking train begin and every optimizer-step end, and keeping the losses."""
    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        def on_train_begin(self, *a, **k):
            mark()

        def on_step_end(self, *a, **k):
            mark()

        def on_log(self, _args, state, _control, logs=None, **k):
            if logs and "loss" in logs:
                losses[state.global_step] = float(logs["loss"])

    return Timer()


def time_prefloop(mark):
    """Mark prefloop's run start and every optimizer-step end (the span of its `step_time_s`).

    Wraps `Run.step_done`, and `start_run` where each training loop imported it from
    `prefloop.train.run`.
    """
    import importlib

    from prefloop.train import run as run_module

    start_run, step_done = run_module.start_run, run_module.Run.step_done

    def timed_start_run(*a, **k):
        run = start_run(*a, **k)
        mark()
        return run

    def timed_step_done(self, *a, **k):
        step_done(self, *a, **k)
        mark()

    run_module.Run.step_done = timed_step_done
    run_module.start_run = timed_start_run
    for name in ("sft", "reward_model", "preference"):
        loop = importlib.import_module(f"prefloop.train.{name}")
        if getattr(loop, "start_run", None) is start_run:
            loop.start_run = timed_start_run


def prefloop_losses(workdir: Path) -> list[float]:
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [
        float(r["loss"]) for r in sorted((r for r in rows if "step_time_s" in r), key=lambda r: r["step"])
    ]


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


def child_main(fn, args, opts: dict, name: str) -> None:
    """Run one framework (`fn(args, opts, workdir)` -> raw dict) and write its measurements to args.json_out."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    sampler = RssSampler()
    out = fn(args, opts, workdir)
    sampler.stop()
    out["peak_rss_mb"] = peak_rss_mb()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # User vs system CPU and page faults of the whole child: memory returned to the OS at once
    # (prefloop's mallopt settings) is paid back as page faults, i.e. system time.
    out["rusage"] = {"user_s": usage.ru_utime, "system_s": usage.ru_stime, "minor_faults": usage.ru_minflt}
    train_start, train_end = out.pop("train_window")
    out["peak_rss_train_mb"] = sampler.peak_between(train_start, train_end)
    out["rss_before_train_mb"] = sampler.peak_between(0.0, train_start)
    if args.device == "cuda":
        import torch

        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    Path(args.json_out).write_text(json.dumps(out))


def timed_result(marks: list, losses: list, **extra) -> dict:
    """The raw dict a child returns: step deltas, the training window, losses and extras."""
    return {**step_deltas(marks), "train_window": (marks[0][0], marks[-1][0]), "losses": losses, **extra}


# ----------------------------------------------------------------------------------------------
# In the parent: children, the matmul peak, FLOPs, summaries, tables.
# ----------------------------------------------------------------------------------------------


def child_env(threads: int) -> dict:
    return dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        TQDM_DISABLE="1",
        PYTHONWARNINGS="ignore",
    )


def run_child(script: str, name: str, flags: list[str], threads: int, verbose: bool = False) -> dict:
    """Run `script --child name flags...` and return the JSON it wrote."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out_path = f.name
    cmd = [sys.executable, script, "--child", name, "--json-out", out_path, *flags]
    print(f"[bench] {name}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=child_env(threads), capture_output=not verbose, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or "")[-4000:] if not verbose else ""
        raise SystemExit(f"[bench] {name} failed (exit {proc.returncode}):\n{tail}")
    raw = json.loads(Path(out_path).read_text())
    os.unlink(out_path)
    raw["wall_s"] = time.perf_counter() - t0
    return raw


def matmul_peak_gflops(threads: int, n: int = 4096, reps: int = 6) -> dict:
    """fp32 GFLOP/s of an n×n by n×n matrix product on `threads` threads (this process).

    "wall": the best wall-clock rate; "cpu": FLOPs per second of process CPU time times the
    threads, i.e. what the threads reach while they run. On a machine shared with other jobs the
    wall rate drops with the load; the CPU rate much less, so shares of the peak are given on
    both bases (steps by wall time against the wall peak, by CPU time against the CPU peak).
    """
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    best_wall = best_cpu = float("inf")
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        torch.mm(a, b)
        best_wall = min(best_wall, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    flops = 2 * n**3
    return {"wall": flops / best_wall / 1e9, "cpu": flops / best_cpu * threads / 1e9, "threads": threads}


def model_shape(model_dir: str, task: str) -> dict:
    """Linear-layer weights of the blocks, width, layers and vocabulary of a model (no weights loaded).

    `task` is "causal" (LM head counted at loss positions) or "reward" (scalar head, negligible).
    """
    import torch
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        body = AutoModel.from_config(config)
    layers = None
    for mod in body.modules():
        if isinstance(mod, torch.nn.ModuleList) and len(mod) == config.num_hidden_layers:
            layers = mod
            break
    linear = sum(m.weight.numel() for m in layers.modules() if isinstance(m, torch.nn.Linear))
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return {
        "linear_params": linear,
        "attn_width": heads * head_dim,
        "layers": config.num_hidden_layers,
        "causal": not getattr(config, "is_encoder_decoder", False) and "Bert" not in type(body).__name__,
        "vocab_size": config.vocab_size if task == "causal" else 0,
        "hidden_size": config.hidden_size,
    }


def forward_flops(shape: dict, length: int, loss_tokens: int = 0) -> float:
    """Forward FLOPs of one unpadded sequence of `length` tokens (see the module docstring)."""
    n, d, layers = length, shape["attn_width"], shape["layers"]
    attn = 2 * d * n * (n + 1) if shape["causal"] else 4 * d * n * n
    head = 2 * shape["vocab_size"] * shape["hidden_size"] * loss_tokens
    return 2 * shape["linear_params"] * n + layers * attn + head


def train_flops(shape: dict, seqs) -> float:
    """Useful training FLOPs (forward + backward = 3 × forward) of `TokenizedSequence`s with loss on
    their response tokens (`loss_tokens` = response tokens for an LM, 0 for a reward model)."""
    return sum(3 * forward_flops(shape, len(s.input_ids), s.num_response_tokens) for s in seqs)


def steady_mean(values: list[float]) -> float:
    steady = values[2:] if len(values) > 2 else values
    return sum(steady) / len(steady)


def summarize(name: str, framework: str, raw: dict, per_step: dict, peak: dict) -> dict:
    """One table row: s/step, CPU s/step, examples/s, tokens/s, share of peak, peak RSS, losses.

    `per_step` holds the step's mean "examples", "tokens" (unpadded) and useful "flops".
    """
    s = steady_mean(raw["step_times_s"])
    cpu = raw.get("step_cpu_s") or []
    row = {
        "run": name,
        "framework": framework,
        "s_per_step": s,
        "cpu_s_per_step": steady_mean(cpu) if cpu else None,
        "system_s_per_step": steady_mean(raw["step_system_s"]) if raw.get("step_system_s") else None,
        "examples_per_s": per_step["examples"] / s,
        "tokens_per_s": per_step["tokens"] / s,
        "gflops_per_s": per_step["flops"] / s / 1e9,
        "share_of_peak": per_step["flops"] / s / 1e9 / peak["wall"],
        "peak_rss_mb": raw["peak_rss_mb"],
        "peak_rss_train_mb": raw.get("peak_rss_train_mb"),
        "rss_before_train_mb": raw.get("rss_before_train_mb"),
        "step1_loss": raw["losses"][0] if raw["losses"] else None,
        "steps": len(raw["step_times_s"]),
        "step_times_s": raw["step_times_s"],
        "step_cpu_s": cpu,
        "losses": raw["losses"],
        "wall_s": raw.get("wall_s"),
        "per_step": per_step,
        "rusage": raw.get("rusage"),
    }
    if row["cpu_s_per_step"]:
        # FLOPs per CPU-second of the step vs the matmul's per CPU-second (times threads alike).
        row["share_of_peak_cpu"] = (
            per_step["flops"] / (row["cpu_s_per_step"] / peak["threads"]) / 1e9 / peak["cpu"]
        )
    if raw.get("peak_cuda_mb") is not None:
        row["peak_cuda_mb"] = raw["peak_cuda_mb"]
    print(
        f"[bench] {name}: {s:.2f} s/step (CPU {row['cpu_s_per_step'] or 0:.2f}, "
        f"of which system {row['system_s_per_step'] or 0:.2f}), "
        f"{row['examples_per_s']:.2f} examples/s, {row['tokens_per_s']:.0f} tokens/s, "
        f"{100 * row['share_of_peak']:.1f}% of peak (CPU basis {100 * (row.get('share_of_peak_cpu') or 0):.1f}%), peak RSS {row['peak_rss_mb']:.0f} MiB, "
        f"losses {[round(x, 4) for x in row['losses'][:3]]}, steps {[round(t, 2) for t in row['step_times_s']]}",
        flush=True,
    )
    return row


def ratio(rows: dict, ours: str, theirs: str) -> dict | None:
    if ours not in rows or theirs not in rows:
        return None
    a, b = rows[ours], rows[theirs]
    out = {
        "ours": ours,
        "theirs": theirs,
        "throughput_ratio": a["examples_per_s"] / b["examples_per_s"],
        "memory_ratio": a["peak_rss_mb"] / b["peak_rss_mb"],
    }
    if a.get("cpu_s_per_step") and b.get("cpu_s_per_step"):
        # CPU seconds per example: less sensitive to other jobs on a shared machine.
        out["cpu_time_ratio"] = (b["cpu_s_per_step"] / b["per_step"]["examples"]) / (
            a["cpu_s_per_step"] / a["per_step"]["examples"]
        )
    return out


def markdown(title: str, rows: dict, ratios: list[dict], descriptions: dict, peak: dict) -> str:
    lines = [
        title,
        "",
        f"fp32 matmul peak measured in this run ({peak['threads']} threads, 4096² × 4096²): "
        f"{peak['wall']:.0f} GFLOP/s wall-clock, {peak['cpu']:.0f} GFLOP/s per {peak['threads']} busy "
        "threads (CPU-time basis). % of peak = useful FLOPs of a step / s/step / wall peak; "
        "CPU basis = useful FLOPs / (CPU s/step / threads) / CPU peak.",
        "",
        "| run | s/step | CPU s/step | examples/s | tokens/s | % of peak (wall / CPU basis) | peak RSS (MiB) |"
        " step-1 loss |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows.values():
        cpu = f"{r['cpu_s_per_step']:.2f}" if r.get("cpu_s_per_step") is not None else "-"
        loss = f"{r['step1_loss']:.4f}" if r.get("step1_loss") is not None else "-"
        share_cpu = f"{100 * r['share_of_peak_cpu']:.1f}" if r.get("share_of_peak_cpu") else "-"
        lines.append(
            f"| {r['run']} | {r['s_per_step']:.2f} | {cpu} | {r['examples_per_s']:.2f} | "
            f"{r['tokens_per_s']:.0f} | {100 * r['share_of_peak']:.1f} / {share_cpu} | {r['peak_rss_mb']:.0f} | {loss} |"
        )
    lines.append("")
    for q in ratios:
        cpu = f", CPU-time throughput ×{q['cpu_time_ratio']:.2f}" if "cpu_time_ratio" in q else ""
        lines.append(
            f"- {q['ours']} / {q['theirs']}: throughput ×{q['throughput_ratio']:.2f}, "
            f"peak RSS ×{q['memory_ratio']:.2f}{cpu}"
        )
    lines += ["", "Run descriptions:"]
    lines += [f"- `{k}`: {v}" for k, v in descriptions.items() if k in rows]
    return "\n".join(lines) + "\n"


def write_results(results_dir: str, stem: str, result: dict, text: str) -> None:
    results = Path(results_dir)
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (results / f"{stem}.md").write_text(text)
    print(f"[bench] wrote {results / stem}.json and .md", flush=True)


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
