"""Side-by-side reward-model benchmark: prefloop's reward loop vs TRL's RewardTrainer.

Both train a scalar-head reward model on the same 64 preference pairs (the DPO benchmark's,
`harness.make_pairs`), batch 8 pairs, max length 128, full fine-tuning, fp32 on CPU with 2
torch threads, with the SmolLM2-135M-Instruct backbone (+ a new scalar head) and with
all-MiniLM-L6-v2. TRL gets the very token ids prefloop trains on (a pre-tokenized dataset of
`chosen_ids` / `rejected_ids`), so both see identical sequences.

Equal settings: Bradley-Terry loss (no margin, no reward centring), learning rate 1e-5
constant, no warmup, no weight decay, clipping at 1.0, fused AdamW, no gradient
checkpointing, fp32 (TRL's defaults would turn on bf16 autocast and gradient checkpointing:
the `trl-*-defaults` rows), dropout as the model defines it (MiniLM: 0.1; TRL would otherwise
disable it), padding to the longest sequence of the batch, no evaluation, metrics every step.

Usage::

    python benchmarks/reward_vs_trl.py                       # all runs, writes results/reward_cpu.{json,md}
    python benchmarks/reward_vs_trl.py --runs trl-minilm prefloop-minilm --steps 8
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

# name -> (framework, backbone, options)
RUNS: dict[str, tuple[str, str, dict]] = {
    "trl-smollm2": ("trl", "default", {}),
    "prefloop-smollm2": ("prefloop", "default", {}),
    "trl-minilm": ("trl", "minilm", {}),
    "prefloop-minilm": ("prefloop", "minilm", {}),
    "trl-smollm2-defaults": ("trl", "default", {"trl_defaults": True}),
    "prefloop-smollm2-padded": ("prefloop", "default", {"packing": False}),
    "prefloop-minilm-padded": ("prefloop", "minilm", {"packing": False}),
}
DEFAULT_RUNS = ["trl-smollm2", "prefloop-smollm2", "trl-minilm", "prefloop-minilm"]
DESCRIPTIONS = {
    "trl-smollm2": "TRL RewardTrainer, SmolLM2-135M-Instruct + scalar head, fp32, no gradient checkpointing",
    "prefloop-smollm2": "prefloop reward loop, SmolLM2-135M-Instruct + scalar head (its defaults)",
    "trl-minilm": "TRL RewardTrainer, all-MiniLM-L6-v2 + scalar head, fp32, dropout kept",
    "prefloop-minilm": "prefloop reward loop, all-MiniLM-L6-v2 (its default backbone)",
    "trl-smollm2-defaults": "TRL RewardTrainer with its own defaults on CPU: bf16 autocast and gradient "
    "checkpointing on (not equal settings; what `RewardConfig()` does out of the box)",
    "prefloop-smollm2-padded": "prefloop with packing off (--no-packing): padded [2b, T] batches",
    "prefloop-minilm-padded": "prefloop with packing off (--no-packing), MiniLM",
}
COMPARISONS = [
    ("prefloop-smollm2", "trl-smollm2"),
    ("prefloop-minilm", "trl-minilm"),
    ("prefloop-smollm2", "trl-smollm2-defaults"),
    ("prefloop-smollm2", "prefloop-smollm2-padded"),
    ("prefloop-minilm", "prefloop-minilm-padded"),
]


def model_dir(backbone: str) -> str:
    from prefloop.models.load import resolve_model

    return resolve_model(backbone)


def run_trl(args, opts: dict, workdir: Path) -> dict:
    torch = harness.setup_torch(args.threads, args.seed)
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    from prefloop.models.load import load_tokenizer

    path = model_dir(RUNS[args.child][1])
    tokenizer = load_tokenizer(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    encoded = harness.encode_pairs(path, harness.make_pairs(args.pairs, args.seed), args.max_length, 64)
    dataset = Dataset.from_list(
        [{"chosen_ids": c.input_ids, "rejected_ids": r.input_ids} for c, r in encoded]
    )
    defaults = bool(opts.get("trl_defaults"))
    config = RewardConfig(
        output_dir=str(workdir),
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=1,
        max_steps=args.steps,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        optim="adamw_torch_fused",
        max_length=args.max_length,
        disable_dropout=False,
        **({} if defaults else {"gradient_checkpointing": False, "bf16": False}),
        use_cpu=True,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        eval_strategy="no",
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=args.seed,
    )
    marks: list = []
    losses: dict[int, float] = {}
    mark = harness.marker(torch, "cpu", marks)
    trainer = RewardTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[harness.trl_timer(mark, losses)],
    )
    trainer.train()
    return harness.timed_result(marks, [losses.get(i + 1) for i in range(len(marks) - 1)])


def run_prefloop(args, opts: dict, workdir: Path) -> dict:
    torch = harness.setup_torch(args.threads, args.seed)
    from prefloop.train import reward_model

    extra = {"packing": opts["packing"]} if "packing" in opts else {}
    cfg = reward_model.RewardConfig(
        model=model_dir(RUNS[args.child][1]),
        output_dir=str(workdir),
        max_steps=args.steps,
        batch_size=args.batch_size,
        grad_accum=1,
        learning_rate=args.lr,
        lr_scheduler="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        max_length=args.max_length,
        max_prompt_length=64,
        seed=args.seed,
        logging_steps=1,
        save_steps=0,
        eval_fraction=0.0,
        normalize_rewards=False,
        report_to_tensorboard="no",
        **extra,
    )
    marks: list = []
    harness.time_prefloop(harness.marker(torch, "cpu", marks))
    reward_model.train(cfg, harness.to_prefloop_records(harness.make_pairs(args.pairs, args.seed)))
    return harness.timed_result(marks, harness.prefloop_losses(workdir))


def per_step_work(args, backbone: str) -> dict:
    """Mean examples (pairs), unpadded tokens and useful FLOPs of one step of `batch_size` pairs."""
    path = model_dir(backbone)
    encoded = harness.encode_pairs(path, harness.make_pairs(args.pairs, args.seed), args.max_length, 64)
    shape = harness.model_shape(path, "reward")
    seqs = [s for pair in encoded for s in pair]
    n = len(encoded)
    return {
        "examples": args.batch_size,
        "tokens": sum(len(s.input_ids) for s in seqs) / n * args.batch_size,
        "flops": harness.train_flops(shape, seqs) / n * args.batch_size,
    }


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", nargs="+", default=DEFAULT_RUNS, help=f"runs to do, from {list(RUNS)}")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--pairs", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="cpu", help="results file suffix: results/reward_<tag>.json|md")
    p.add_argument("--results-dir", default=str(harness.RESULTS))
    p.add_argument("--no-write", action="store_true", help="print only, write no results files")
    p.add_argument("--verbose", action="store_true", help="show the children's output")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--json-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.device = "cpu"
    return args


def child_flags(args) -> list[str]:
    return [
        *("--steps", str(args.steps), "--batch-size", str(args.batch_size)),
        *("--max-length", str(args.max_length), "--lr", str(args.lr), "--pairs", str(args.pairs)),
        *("--threads", str(args.threads), "--seed", str(args.seed)),
    ]


def main(argv=None) -> None:
    args = parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.child:
        framework, _, opts = RUNS[args.child]
        harness.child_main({"trl": run_trl, "prefloop": run_prefloop}[framework], args, opts, args.child)
        return
    unknown = [n for n in args.runs if n not in RUNS]
    if unknown:
        raise SystemExit(f"unknown runs {unknown}; choose from {list(RUNS)}")
    peak = harness.matmul_peak_gflops(args.threads)
    print(f"[bench] fp32 matmul peak on {args.threads} threads: {peak}", flush=True)
    work = {b: per_step_work(args, b) for b in {RUNS[n][1] for n in args.runs}}
    rows: dict[str, dict] = {}
    for name in args.runs:
        framework, backbone, _ = RUNS[name]
        raw = harness.run_child(__file__, name, child_flags(args), args.threads, args.verbose)
        rows[name] = harness.summarize(name, framework, raw, work[backbone], peak)
        ratios = [q for a, b in COMPARISONS if (q := harness.ratio(rows, a, b))]
        title = (
            f"Reward model, {args.pairs} pairs, batch {args.batch_size} pairs, max length {args.max_length}, "
            f"fp32 on cpu ({args.threads} torch threads), {args.steps} steps; steady state = mean of steps "
            f"3..{args.steps}."
        )
        text = harness.markdown(title, rows, ratios, DESCRIPTIONS, peak)
        result = {
            "settings": {
                **{k: v for k, v in vars(args).items() if k not in ("child", "json_out")},
                "peak_gflops": peak,
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "versions": harness.versions(),
                "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
            },
            "rows": list(rows.values()),
            "ratios": ratios,
        }
        if not args.no_write:
            harness.write_results(args.results_dir, f"reward_{args.tag}", result, text)
    print(text, flush=True)


if __name__ == "__main__":
    main()
