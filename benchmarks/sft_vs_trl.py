"""Side-by-side SFT benchmark: prefloop's SFT loop vs TRL's SFTTrainer, with and without packing.

Both fine-tune the embedded SmolLM2-135M-Instruct on the same 64 demonstrations (the DPO
benchmark's prompts with their helpful replies, `harness.make_pairs`), batch 8, max length 128,
full fine-tuning, fp32 on CPU with 2 torch threads, loss on the reply tokens only. TRL gets the
very token ids prefloop trains on (a pre-tokenized dataset of `input_ids` + `completion_mask`).

Equal settings: learning rate 2e-5 constant, no warmup, no weight decay, clipping at 1.0, fused
AdamW, no gradient checkpointing, fp32 (TRL's defaults would turn on bf16 autocast and gradient
checkpointing), no evaluation, metrics every step.

What "packing" means differs, so compare examples/s and tokens/s, not s/step:
- TRL `packing=True` (its default "bfd" strategy): demonstrations are packed into rows of up to
  `max_length` tokens before training, each row padding-free with position ids restarting per
  demonstration; a batch is 8 such rows (about 2 demonstrations each here).
- prefloop `--packing` (its default): a batch is 8 demonstrations laid out as one padding-free
  row, the chat template's shared system turn stored once (`prefloop.models.packing`).
Without packing both pad a batch of 8 demonstrations to its longest.

Usage::

    python benchmarks/sft_vs_trl.py                      # all runs, writes results/sft_cpu.{json,md}
    python benchmarks/sft_vs_trl.py --runs trl prefloop --steps 8
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

# name -> (framework, options)
RUNS: dict[str, tuple[str, dict]] = {
    "trl": ("trl", {"packing": False}),
    "prefloop-padded": ("prefloop", {"packing": False}),
    "trl-packing": ("trl", {"packing": True}),
    "prefloop": ("prefloop", {}),
    "prefloop-packed": ("prefloop", {"share_prefix": False}),
}
DEFAULT_RUNS = ["trl", "prefloop-padded", "trl-packing", "prefloop", "prefloop-packed"]
DESCRIPTIONS = {
    "trl": "TRL SFTTrainer without packing: batch of 8 demonstrations padded to the longest",
    "prefloop-padded": "prefloop SFT with packing off (--no-packing): batch of 8 padded to the longest",
    "trl-packing": "TRL SFTTrainer packing=True (bfd, padding-free rows of <= 128 tokens; batch = 8 rows)",
    "prefloop": "prefloop SFT defaults: batch of 8 as one padding-free row, shared system turn stored once",
    "prefloop-packed": "prefloop SFT packed without prefix sharing (--no-share-prefix)",
}
COMPARISONS = [
    ("prefloop-padded", "trl"),
    ("prefloop", "trl-packing"),
    ("prefloop", "trl"),
    ("prefloop-packed", "trl-packing"),
    ("prefloop", "prefloop-padded"),
    ("trl-packing", "trl"),
]


def demonstrations(args) -> list:
    """The benchmark's demonstrations as prefloop TokenizedSequences (prompt + helpful reply)."""
    encoded = harness.encode_pairs(args.model, harness.make_pairs(args.pairs, args.seed), args.max_length, 64)
    return [chosen for chosen, _ in encoded]


def run_trl(args, opts: dict, workdir: Path) -> dict:
    torch = harness.setup_torch(args.threads, args.seed)
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from prefloop.models.load import load_tokenizer

    tokenizer = load_tokenizer(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    seqs = demonstrations(args)
    dataset = Dataset.from_list(
        [{"input_ids": s.input_ids, "completion_mask": s.response_mask} for s in seqs]
    )
    config = SFTConfig(
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
        packing=opts["packing"],
        completion_only_loss=True,
        gradient_checkpointing=False,
        bf16=False,
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
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[harness.trl_timer(mark, losses)],
    )
    rows = len(trainer.train_dataset)  # packed rows (or the demonstrations themselves)
    trainer.train()
    return harness.timed_result(
        marks,
        [losses.get(i + 1) for i in range(len(marks) - 1)],
        examples_per_step=args.batch_size * len(seqs) / rows,
    )


def run_prefloop(args, opts: dict, workdir: Path) -> dict:
    torch = harness.setup_torch(args.threads, args.seed)
    from prefloop.data.records import Demonstration
    from prefloop.train import sft

    pairs = harness.make_pairs(args.pairs, args.seed)
    records = [Demonstration(prompt=p["prompt"], response=p["chosen"][0]["content"]) for p in pairs]
    extra = {k: opts[k] for k in ("packing", "share_prefix") if k in opts}
    cfg = sft.SFTConfig(
        model=args.model,
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
        report_to_tensorboard="no",
        **extra,
    )
    marks: list = []
    harness.time_prefloop(harness.marker(torch, "cpu", marks))
    sft.train(cfg, records)
    return harness.timed_result(marks, harness.prefloop_losses(workdir), examples_per_step=args.batch_size)


def per_example_work(args) -> dict:
    seqs = demonstrations(args)
    shape = harness.model_shape(args.model, "causal")
    n = len(seqs)
    return {
        "tokens": sum(len(s.input_ids) for s in seqs) / n,
        "flops": harness.train_flops(shape, seqs) / n,
    }


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", nargs="+", default=DEFAULT_RUNS, help=f"runs to do, from {list(RUNS)}")
    p.add_argument("--model", default=None, help="model dir (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--pairs", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="cpu", help="results file suffix: results/sft_<tag>.json|md")
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
        *("--model", args.model, "--steps", str(args.steps), "--batch-size", str(args.batch_size)),
        *("--max-length", str(args.max_length), "--lr", str(args.lr), "--pairs", str(args.pairs)),
        *("--threads", str(args.threads), "--seed", str(args.seed)),
    ]


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
    peak = harness.matmul_peak_gflops(args.threads)
    print(f"[bench] fp32 matmul peak on {args.threads} threads: {peak}", flush=True)
    each = per_example_work(args)
    rows: dict[str, dict] = {}
    for name in args.runs:
        framework, _ = RUNS[name]
        raw = harness.run_child(__file__, name, child_flags(args), args.threads, args.verbose)
        k = raw["examples_per_step"]
        work = {"examples": k, "tokens": each["tokens"] * k, "flops": each["flops"] * k}
        rows[name] = harness.summarize(name, framework, raw, work, peak)
        ratios = [q for a, b in COMPARISONS if (q := harness.ratio(rows, a, b))]
        title = (
            f"SFT on {Path(args.model).name}, {args.pairs} demonstrations, batch {args.batch_size}, max length "
            f"{args.max_length}, fp32 on cpu ({args.threads} torch threads), {args.steps} steps; steady state = "
            f"mean of steps 3..{args.steps}; examples = demonstrations (TRL's packed batch holds more than 8)."
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
            harness.write_results(args.results_dir, f"sft_{args.tag}", result, text)
    print(text, flush=True)


if __name__ == "__main__":
    main()
