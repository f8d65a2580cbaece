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

Rows `prefloop-padded` and `prefloop-packed` switch off prefloop's prefix sharing and packing
one at a time (`--no-share-prefix`, `--no-packing`), so the table shows what each buys.

Usage::

    python benchmarks/dpo_vs_trl.py                 # all runs, CPU fp32, writes benchmarks/results/
    python benchmarks/dpo_vs_trl.py --runs trl prefloop --steps 8
    python benchmarks/dpo_vs_trl.py --device cuda --dtype bf16 --tag gpu

The runs are done back to back in one invocation because the machine is shared and noisy:
compare ratios from the same invocation, not absolute numbers across invocations.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
from harness import make_pairs, to_prefloop_records

HERE = Path(__file__).resolve().parent
RESULTS = harness.RESULTS
LN2 = math.log(2.0)

# ----------------------------------------------------------------------------------------------
# Children: one framework per process.
# ----------------------------------------------------------------------------------------------

# name -> (framework, options). "Equal settings" rows first; the rest show what else is bought.
RUNS: dict[str, tuple[str, dict]] = {
    "trl": ("trl", {"precompute_ref": True}),
    "prefloop": ("prefloop", {}),
    "prefloop-packed": ("prefloop", {"share_prefix": False}),
    "prefloop-padded": ("prefloop", {"packing": False}),
    "trl-liveref": ("trl", {"precompute_ref": False}),
    "prefloop-lora": ("prefloop", {"lora": True}),
    "trl-pad128": ("trl", {"precompute_ref": True, "pad_to_max": True}),
    "prefloop-pad128": ("prefloop", {"pad_to_max": True, "packing": False}),
}
DEFAULT_RUNS = ["trl", "prefloop", "prefloop-packed", "prefloop-padded"]
DESCRIPTIONS = {
    "trl": "TRL DPOTrainer, reference log-probs precomputed (precompute_ref_log_probs=True), pad to longest in batch",
    "prefloop": "prefloop preference loop (dpo), full fine-tuning, reference precomputed, packed batch with "
    "prefix sharing (its defaults)",
    "prefloop-packed": "prefloop, packed padding-free batch without prefix sharing (--no-share-prefix)",
    "prefloop-padded": "prefloop with packing off (--no-packing): [2b, T] batch padded to the longest sequence",
    "trl-liveref": "TRL DPOTrainer with its default live reference model (a second copy in memory, "
    "one extra forward per step)",
    "trl-pad128": "TRL DPOTrainer, precomputed reference, every sequence padded to max length "
    "(pad_to_multiple_of=128)",
    "prefloop-lora": "prefloop with LoRA (r=16, alpha=32); reference = adapter-disabled base",
    "prefloop-pad128": "prefloop made to pad every sequence to max length (pad_batch wrapped by the benchmark)",
}
COMPARISONS = [
    ("prefloop", "trl"),
    ("prefloop-packed", "trl"),
    ("prefloop-padded", "trl"),
    ("prefloop", "prefloop-padded"),
    ("prefloop-packed", "prefloop-padded"),
    ("prefloop", "trl-liveref"),
    ("prefloop-lora", "trl"),
    ("prefloop-pad128", "trl-pad128"),
]


def _torch_dtype(torch, name: str):
    return {"fp32": torch.float32, "bf16": torch.bfloat16}[name]


def run_trl(args, opts: dict, workdir: Path) -> dict:
    """Train with TRL's DPOTrainer; returns per-step times and losses."""
    torch = harness.setup_torch(args.threads, args.seed)
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
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
    mark = harness.marker(torch, args.device, marks)
    t0 = time.perf_counter()
    trainer = DPOTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[harness.trl_timer(mark, losses)],
    )
    setup_s = time.perf_counter() - t0
    trainer.train()
    return harness.timed_result(marks, [losses.get(i + 1) for i in range(len(marks) - 1)], setup_s=setup_s)


def run_prefloop(args, opts: dict, workdir: Path) -> dict:
    """Train with prefloop's offline preference loop; returns per-step times and losses."""
    torch = harness.setup_torch(args.threads, args.seed)
    from prefloop.train import preference

    if opts.get("pad_to_max", args.pad_to_max):
        _force_padding(args.max_length)
    extra = {k: opts[k] for k in ("packing", "share_prefix") if k in opts}
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
        **extra,
    )
    records = to_prefloop_records(make_pairs(args.pairs, args.seed))
    # Time steps exactly as for TRL: marks after setup (start_run) and after each optimizer step.
    marks: list[tuple[float, float]] = []
    harness.time_prefloop(harness.marker(torch, args.device, marks))
    preference.train(cfg, records)
    return harness.timed_result(marks, harness.prefloop_losses(workdir))


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


def per_step_work(args) -> dict:
    """Mean pairs, unpadded tokens and useful FLOPs (policy forward + backward) of one step."""
    encoded = harness.encode_pairs(
        args.model, make_pairs(args.pairs, args.seed), args.max_length, args.max_prompt_length
    )
    shape = harness.model_shape(args.model, "causal")
    seqs = [s for pair in encoded for s in pair]
    n = len(encoded)
    return {
        "examples": args.batch_size,
        "tokens": sum(len(s.input_ids) for s in seqs) / n * args.batch_size,
        "flops": harness.train_flops(shape, seqs) / n * args.batch_size,
    }


def child_flags(args) -> list[str]:
    """The shared settings, passed on to a child."""
    return [
        *("--model", args.model, "--steps", str(args.steps), "--batch-size", str(args.batch_size)),
        *("--max-length", str(args.max_length), "--max-prompt-length", str(args.max_prompt_length)),
        *("--lr", str(args.lr), "--max-grad-norm", str(args.max_grad_norm), "--trl-optim", args.trl_optim),
        *("--pairs", str(args.pairs), "--threads", str(args.threads), "--seed", str(args.seed)),
        *("--device", args.device, "--dtype", args.dtype),
    ] + (["--pad-to-max"] if args.pad_to_max else [])


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
        framework, opts = RUNS[args.child]
        harness.child_main({"trl": run_trl, "prefloop": run_prefloop}[framework], args, opts, args.child)
        return
    if args.random_weights:
        args.model = str(random_init_copy(args.model, args.seed))
    unknown = [n for n in args.runs if n not in RUNS]
    if unknown:
        raise SystemExit(f"unknown runs {unknown}; choose from {list(RUNS)}")
    peak = harness.matmul_peak_gflops(args.threads)
    print(f"[bench] fp32 matmul peak on {args.threads} threads: {peak}", flush=True)
    work = per_step_work(args)
    rows: dict[str, dict] = {}
    for name in args.runs:  # results are rewritten after every run, so a cut-short invocation keeps its rows
        raw = harness.run_child(__file__, name, child_flags(args), args.threads, args.verbose)
        rows[name] = harness.summarize(name, RUNS[name][0], raw, work, peak)
        report(rows, args, peak)
    bad = [n for n, r in rows.items() if abs(r["step1_loss"] - LN2) > 2e-3]
    if bad:
        raise SystemExit(f"[bench] step-1 loss differs from ln 2 = {LN2:.5f} in: {bad}")


def report(rows: dict[str, dict], args, peak: dict) -> None:
    """Print the table and (unless --no-write) write results/dpo_<tag>.json and .md."""
    ratios = [q for a, b in COMPARISONS if (q := harness.ratio(rows, a, b))]
    title = (
        f"DPO on {Path(args.model).name}, {args.pairs} pairs, batch {args.batch_size} pairs, max length "
        f"{args.max_length}, {args.dtype} on {args.device} ({args.threads} torch threads), {args.steps} steps; "
        f"steady state = mean of steps 3..{args.steps}; examples = pairs."
    )
    text = harness.markdown(title, rows, ratios, DESCRIPTIONS, peak)
    print(text, flush=True)
    result = {
        "settings": {
            **{k: v for k, v in vars(args).items() if k not in ("child", "json_out")},
            "model_name": Path(args.model).name,
            "beta": 0.1,
            "loss": "sigmoid DPO",
            "peak_gflops": peak,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "versions": harness.versions(),
            "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        },
        "rows": list(rows.values()),
        "ratios": ratios,
        "descriptions": {k: v for k, v in DESCRIPTIONS.items() if k in rows},
    }
    if not args.no_write:
        harness.write_results(args.results_dir, f"dpo_{args.tag}", result, text)


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


if __name__ == "__main__":
    main()
