"""The reward–KL frontier of the demo task: DPO at several β (and PPO at several KL targets) + best-of-n.

Run after `prefloop demo` (it reuses the demo's simulated-annotator rankings and reward model):

    python examples/frontier/sweep.py --demo outputs/demo --out runs/frontier --betas 0.03 0.1 0.3

Each DPO run has the demo's settings (LoRA, lr 5e-4, best-vs-worst pairs, 2 epochs) but its own β
and a checkpoint every 4 steps, so every run adds several points. `--ppo-targets` adds `prefloop ppo`
runs against the demo's reward model with those KL targets (adaptive KL controller, LoRA, lr
--ppo-lr = 2e-4 as the demo's RL phase; `prefloop ppo`'s own default of 1e-6 is for full fine-tuning
and barely moves LoRA adapters in 12 steps). Then
`prefloop eval frontier` places every checkpoint, and best-of-n of the start model picked by the
reward model, on one plot: runs/frontier/eval/frontier.png. docs/evaluation.md has the figure
and the time it took on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--demo", default="outputs/demo", help="a finished `prefloop demo` output dir")
    parser.add_argument("--out", default="runs/frontier")
    parser.add_argument("--betas", type=float, nargs="*", default=[0.03, 0.1, 0.3])
    parser.add_argument("--ppo-targets", type=float, nargs="*", default=[])
    parser.add_argument("--ppo-steps", type=int, default=12)
    parser.add_argument(
        "--ppo-lr", type=float, default=2e-4, help="PPO learning rate (LoRA; the demo's RL rate)"
    )
    parser.add_argument("--best-of-n", type=int, nargs="*", default=[1, 2, 4, 8, 16])
    parser.add_argument("--num-samples", type=int, default=4)
    parser.add_argument("--save-steps", type=int, default=4)
    args = parser.parse_args()

    from prefloop.data.io import read_records
    from prefloop.demo import _pairs_for_dpo
    from prefloop.train import preference

    demo, out = Path(args.demo), Path(args.out)
    demo_cfg = json.loads((demo / "summary.json").read_text()).get("config", {})
    rankings = read_records(demo / "preferences.jsonl", kind="ranked")
    pairs = _pairs_for_dpo(rankings, "best_worst")
    runs = []
    for beta in args.betas:
        run = out / f"dpo-b{beta:g}"
        runs.append(str(run))
        if (run / "final").is_dir():
            continue
        cfg = preference.PreferenceConfig(
            model=demo_cfg.get("model", "default"),
            output_dir=str(run),
            loss="dpo",
            beta=beta,
            learning_rate=demo_cfg.get("dpo_lr", 5e-4),
            epochs=demo_cfg.get("dpo_epochs", 2),
            batch_size=demo_cfg.get("dpo_batch_size", 8),
            lora=True,
            max_length=256,
            max_prompt_length=128,
            seed=0,
            save_steps=args.save_steps,
            save_total_limit=0,
            report_to_tensorboard="no",
        )
        preference.train(cfg, records=pairs)
    prompts_file = out / "train_prompts.jsonl"
    prompts_file.parent.mkdir(parents=True, exist_ok=True)
    prompts_file.write_text("".join(json.dumps({"prompt": r.prompt}) + "\n" for r in rankings))
    for target in args.ppo_targets:
        run = out / f"ppo-kl{target:g}"
        runs.append(str(run))
        if (run / "final").is_dir():
            continue
        cmd = [
            sys.executable,
            "-m",
            "prefloop.cli",
            "ppo",
            "--model",
            "default",
            "--data",
            str(prompts_file),
            "--reward",
            f"rm:{demo / 'reward_model'}",
            "--output-dir",
            str(run),
            "--max-steps",
            str(args.ppo_steps),
            "--adaptive-kl",  # without it β stays fixed and the target is ignored
            "--kl-target",
            str(target),
            "--learning-rate",
            str(args.ppo_lr),
            "--save-steps",
            str(args.save_steps),
            "--save-total-limit",
            "0",
            "--lora",
        ]
        subprocess.run(cmd, check=True)
    cmd = [
        sys.executable,
        "-m",
        "prefloop.cli",
        "eval",
        "frontier",
        "--runs",
        *runs,
        "--reference",
        "default",
        "--judge",
        "gold:positive_replies",
        "--data",
        "task:positive_replies",
        "--num-prompts",
        "30",
        "--max-new-tokens",
        "32",
        "--num-samples",
        str(args.num_samples),
        "--output-dir",
        str(out / "eval"),
    ]
    if args.best_of_n:
        cmd += ["--best-of-n", *map(str, args.best_of_n), "--proxy", f"rm:{demo / 'reward_model'}"]
    subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
