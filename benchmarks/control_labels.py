"""Return against labels on a control task: true-reward PPO vs preference PPO at several budgets.

For each seed: a random policy (the 0 of the normalised score), `prefloop control --reward true`
(the 1) and `prefloop control` with a simulated teacher at every label budget, all with the same
environment steps. Each run's score is its deterministic evaluation return (`summary.json`,
`eval_return_mean`); the normalised score is (R − R_random) / (R_true − R_random) with R_random and
R_true the means over seeds. Prints a table (mean ± std over seeds) and writes table.json, table.md
and labels.png (normalised score against labels). A rerun reuses the runs that finished.

Run it on an idle machine, under the heavy lock on the shared one:

    flock /tmp/prefloop-heavy.lock python benchmarks/control_labels.py --env CartPole-v1 \\
        --labels 30 100 300 --seeds 0 1 2 --total-steps 50000 --output-dir runs/control_bench

Each run is a child process (`python -m prefloop.cli control ...`), so one run's threads or memory
do not affect the next; the wall time of each is reported.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np


def random_return(env_id: str, episodes: int, seed: int) -> float:
    """Mean true return of uniformly random actions over ``episodes`` episodes."""
    import gymnasium as gym

    env = gym.make(env_id)
    env.action_space.seed(seed)
    total = 0.0
    for i in range(episodes):
        env.reset(seed=seed + 10_000 + i)
        done = False
        while not done:
            _, r, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(r)
            done = terminated or truncated
    env.close()
    return total / episodes


def normalised_score(returns, r_random: float, r_true: float) -> np.ndarray:
    """(R − R_random) / (R_true − R_random): random policy = 0, true-reward PPO = 1 (NaN if they tie)."""
    returns = np.asarray(returns, dtype=float)
    if r_true == r_random:
        return np.full_like(returns, np.nan)
    return (returns - r_random) / (r_true - r_random)


def run(out: Path, args: argparse.Namespace, extra: list[str]) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "prefloop.cli",
        "control",
        "--env",
        args.env,
        "--total-steps",
        str(args.total_steps),
        "--output-dir",
        str(out),
        "--eval-episodes",
        str(args.eval_episodes),
        *args.control_args,
        *extra,
    ]
    done = out / "summary.json"
    if done.exists() and "wall_s" in (summary := json.loads(done.read_text())):
        return summary  # finished in an earlier invocation: a rerun only adds what is missing
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    summary = json.loads(done.read_text())
    summary["wall_s"] = time.perf_counter() - started
    done.write_text(json.dumps(summary, indent=2))
    return summary


def finish(fig, ax, title: str, path: Path) -> None:
    """The figures' common ending: wrapped title, grid, legend, saved and closed."""
    import matplotlib.pyplot as plt

    ax.set_title(textwrap.fill(title, 90), fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot(rows: dict[str, list[dict]], r_random: float, r_true: float, title: str, path: Path) -> None:
    """Normalised score against labels: each seed's run, mean ± std, the true-reward level and 0.9."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = sorted(int(k) for k in rows if k != "true")
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    means, stds = [], []
    for n in budgets:
        scores = normalised_score([r["eval_return_mean"] for r in rows[str(n)]], r_random, r_true)
        ax.plot([n] * len(scores), scores, "o", color="#999", ms=4, alpha=0.7)
        means.append(float(np.mean(scores)))
        stds.append(float(np.std(scores)))
    ax.errorbar(
        budgets, means, yerr=stds, marker="s", color="#c52", capsize=4, label="preference PPO, mean ± std"
    )
    ax.axhline(1.0, color="#2a7", ls="--", label="true-reward PPO (mean over seeds)")
    ax.axhline(0.9, color="#27c", ls=":", label="target 0.9")
    ax.axhline(0.0, color="#555", lw=0.8, label="random policy")
    ax.set_xscale("log")
    ax.set_xticks(budgets, [str(n) for n in budgets])
    ax.set_xlabel("labels (segment-pair comparisons)")
    ax.set_ylabel("normalised return")
    finish(fig, ax, title, path)


def plot_curves(root: Path, budgets: list[int], seeds: list[int], title: str, path: Path) -> None:
    """Training curves: true episode return against env steps, mean over seeds, for true-reward PPO and
    each label budget (each iteration's mean over the episodes that ended in it, smoothed over 5)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def curve(name: str) -> tuple[np.ndarray, np.ndarray] | None:
        per_seed = []
        for seed in seeds:
            metrics = root / f"{name}-s{seed}" / "metrics.jsonl"
            if not metrics.exists():
                continue
            rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
            per_seed.append(
                {r["env_steps"]: r["true/episode_return"] for r in rows if "true/episode_return" in r}
            )
        if not per_seed:
            return None
        steps = sorted(set.intersection(*(set(d) for d in per_seed)))
        mean = np.array([np.mean([d[t] for d in per_seed]) for t in steps])
        smooth = np.convolve(mean, np.ones(5) / 5, mode="valid") if len(mean) >= 5 else mean
        return np.array(steps[len(steps) - len(smooth) :]), smooth

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    colours = plt.get_cmap("plasma")(np.linspace(0.05, 0.8, max(len(budgets), 1)))
    for name, label, colour in [("true", "true-reward PPO", "black")] + [
        (f"pref{n}", f"{n} labels", colours[i]) for i, n in enumerate(budgets)
    ]:
        c = curve(name)
        if c is not None:
            ax.plot(*c, label=label, color=colour, lw=2.2 if name == "true" else 1.4)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(f"true episode return (training, mean over {len(seeds)} seeds)")
    finish(fig, ax, title, path)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--labels", type=int, nargs="+", default=[30, 100, 300])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--total-steps", type=int, default=50_000)
    parser.add_argument("--teacher", default="oracle")
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--output-dir", default="runs/control_bench")
    parser.add_argument(
        "--control-args",
        nargs=argparse.REMAINDER,
        default=[],
        help="more flags for every run (last on the line)",
    )
    args = parser.parse_args()
    root = Path(args.output_dir)
    rows: dict[str, list[dict]] = {"true": []}
    randoms = []
    for seed in args.seeds:
        randoms.append(random_return(args.env, args.eval_episodes, seed))
        s = ["--seed", str(seed)]
        rows["true"].append(run(root / f"true-s{seed}", args, ["--reward", "true", *s]))
        print(f"seed {seed} true-reward PPO: {rows['true'][-1]['eval_return_mean']:.1f}", flush=True)
        for n in args.labels:
            summary = run(
                root / f"pref{n}-s{seed}", args, ["--labels", str(n), "--teacher", args.teacher, *s]
            )
            rows.setdefault(str(n), []).append(summary)
            print(
                f"seed {seed} {n} labels: {summary['eval_return_mean']:.1f} "
                f"(agreement {summary['heldout_agreement']})",
                flush=True,
            )
    r_random = float(np.mean(randoms))
    r_true = float(np.mean([r["eval_return_mean"] for r in rows["true"]]))
    table = []
    for name, runs in rows.items():
        returns = np.array([r["eval_return_mean"] for r in runs])
        scores = normalised_score(returns, r_random, r_true)
        table.append(
            {
                "run": "true-reward PPO" if name == "true" else f"preference PPO, {name} labels",
                "labels": 0 if name == "true" else int(name),
                "return_mean": float(returns.mean()),
                "return_std": float(returns.std()),
                "score_mean": float(scores.mean()),
                "score_std": float(scores.std()),
                "returns": [float(x) for x in returns],
                "wall_s_mean": float(np.mean([r["wall_s"] for r in runs])),
                "seeds": len(runs),
            }
        )
    header = (
        f"{args.env}, {args.total_steps} env steps per run, teacher {args.teacher}, seeds {args.seeds}; "
        f"random policy {r_random:.1f}, true-reward PPO {r_true:.1f}"
    )
    lines = [
        header,
        "",
        "| run | return (mean ± std) | normalised score (mean ± std) | return per seed | wall s / run |",
        "|---|---:|---:|---|---:|",
    ]
    for t in table:
        lines.append(
            f"| {t['run']} | {t['return_mean']:.1f} ± {t['return_std']:.1f} | "
            f"{t['score_mean']:.2f} ± {t['score_std']:.2f} | {' / '.join(f'{x:.0f}' for x in t['returns'])} | "
            f"{t['wall_s_mean']:.0f} |"
        )
    text = "\n".join(lines)
    print(text)
    root.mkdir(parents=True, exist_ok=True)
    (root / "table.md").write_text(text + "\n")
    (root / "table.json").write_text(
        json.dumps({"random": r_random, "true": r_true, "rows": table}, indent=2)
    )
    plot(rows, r_random, r_true, header, root / "labels.png")
    plot_curves(root, args.labels, args.seeds, header, root / "curves.png")


if __name__ == "__main__":
    main()
