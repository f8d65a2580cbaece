"""Plots for reports (matplotlib, Agg backend: works without a display).

`demo_figure` draws the four panels of the demo report into one PNG:
  1. gold score of held-out samples before vs after training (histograms + means);
  2. the DPO training curve (loss, and implied-reward accuracy on a second axis);
  3. the reward model on held-out samples: its score against the gold score (`rm_points`: a
     list of (gold, rm) or {"before": [...], "after": [...]});
  4. the headline numbers as bars: gold before/after, win rate, RM accuracy, annotator agreement.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede the pyplot import
    import matplotlib.pyplot as plt

    return plt


def _smooth(values: Sequence[float], window: int) -> list[float]:
    """Trailing moving average (the first points average what exists so far)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def demo_figure(
    path: str | Path,
    gold_before: Sequence[float],
    gold_after: Sequence[float],
    dpo_metrics: Sequence[dict[str, Any]],
    rm_points,
    headline: dict[str, float],
    title: str = "",
) -> Path:
    """Write the demo's 2x2 figure to `path` and return it."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    _gold_panel(axes[0, 0], gold_before, gold_after)
    _curve_panel(axes[0, 1], dpo_metrics)
    _rm_panel(axes[1, 0], rm_points)
    _headline_panel(axes[1, 1], headline)
    if title:
        fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _gold_panel(ax, before: Sequence[float], after: Sequence[float]) -> None:
    bins = [i / 10 for i in range(-15, 11)]  # gold scores live in [-1.5, 1]
    ax.hist(before, bins=bins, alpha=0.55, label="before (start model)", color="tab:gray")
    ax.hist(after, bins=bins, alpha=0.55, label="after DPO", color="tab:green")
    for values, color in ((before, "tab:gray"), (after, "tab:green")):
        if values:
            mean = sum(values) / len(values)
            ax.axvline(mean, color=color, linestyle="--", linewidth=2)
    ax.set_title("Gold score of held-out samples (dashed: means)")
    ax.set_xlabel("gold score (VADER compound − length penalty)")
    ax.set_ylabel("responses")
    ax.legend(loc="upper left")


def _curve_panel(ax, metrics: Sequence[dict[str, Any]]) -> None:
    rows = [m for m in metrics if "loss" in m and "step" in m]
    ax.set_title("DPO training curve")
    if not rows:
        ax.text(0.5, 0.5, "no metrics logged", ha="center", va="center", transform=ax.transAxes)
        return
    steps = [m["step"] for m in rows]
    window = max(1, len(rows) // 10)
    loss = [m["loss"] for m in rows]
    ax.plot(steps, loss, color="tab:blue", alpha=0.3)
    ax.plot(steps, _smooth(loss, window), color="tab:blue", label="loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss", color="tab:blue")
    acc_key = next(
        (
            k
            for k in ("rewards/accuracy", "reward_accuracy", "accuracy", "rewards/accuracies")
            if k in rows[0]
        ),
        None,
    )
    if acc_key:
        ax2 = ax.twinx()
        acc = [m.get(acc_key, float("nan")) for m in rows]
        ax2.plot(steps, _smooth(acc, window), color="tab:orange", label="implied-reward accuracy")
        ax2.set_ylabel("accuracy (smoothed)", color="tab:orange")
        ax2.set_ylim(-0.05, 1.05)
    ax.axhline(0.6931, color="tab:blue", linestyle=":", linewidth=1)  # ln 2: the loss at step 0


def _rm_panel(ax, points) -> None:
    """Scatter of (gold, reward-model score); `points` is a list, or {label: list} per group."""
    ax.set_title("Reward model vs gold on held-out samples")
    groups = points if isinstance(points, dict) else {"samples": points}
    colors = {"before": "tab:gray", "after": "tab:green"}
    drawn = False
    for label, pts in groups.items():
        if pts:
            gold, rm = zip(*pts)
            ax.scatter(gold, rm, s=14, alpha=0.6, color=colors.get(label, "tab:purple"), label=label)
            drawn = True
    if not drawn:
        ax.text(0.5, 0.5, "no reward model scores", ha="center", va="center", transform=ax.transAxes)
        return
    ax.set_xlabel("gold score")
    ax.set_ylabel("reward model score")
    if len(groups) > 1:
        ax.legend(loc="upper left")


def _headline_panel(ax, headline: dict[str, float]) -> None:
    names = list(headline)
    values = [headline[n] for n in names]
    colors = ["tab:gray" if "before" in n else "tab:green" if "after" in n else "tab:blue" for n in names]
    bars = ax.bar(range(len(names)), values, color=colors)
    for bar, v in zip(bars, values):
        ax.text(
            bar.get_x() + bar.get_width() / 2,
            v,
            f"{v:.3f}",
            ha="center",
            va="bottom" if v >= 0 else "top",
            fontsize=9,
        )
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=20, ha="right", fontsize=9)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_title("Headline numbers (held-out prompts)")


def rl_figure(
    path: str | Path,
    metrics: Sequence[dict[str, Any]],
    gold_per_step: Sequence[float],
    points: dict[str, tuple[float, float]],
    method: str = "RL",
) -> Path:
    """The RL demo's figure: gold score, reward-model score and KL over RL steps (left), and
    gold vs KL on the held-out prompts for the start model, DPO and RL (right)."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    rows = [m for m in metrics if "score/mean" in m]
    steps = [m["step"] for m in rows]
    window = max(1, len(rows) // 8)
    left.set_title(f"{method.upper()} against the reward model: training samples per step")
    if rows:
        left.plot(
            steps,
            _smooth([m["score/mean"] for m in rows], window),
            color="tab:purple",
            label="reward-model score",
        )
        gold = list(gold_per_step)[: len(steps)]
        left.plot(
            steps[: len(gold)],
            _smooth(gold, window),
            color="tab:green",
            label="gold score (never trained on)",
        )
        left.set_xlabel("rollout step")
        left.set_ylabel("score (smoothed)")
        left.legend(loc="upper left")
        kl_axis = left.twinx()
        kl_axis.plot(steps, [m["kl"] for m in rows], color="tab:red", alpha=0.7, label="KL to start (nats)")
        kl_axis.set_ylabel("KL(π ‖ π_start) per reply, nats", color="tab:red")
    right.set_title("Held-out prompts: gold score vs KL to the start model")
    colors = {"start": "tab:gray", "dpo": "tab:blue"}
    for label, (kl, gold_point) in points.items():
        right.scatter([kl], [gold_point], s=80, color=colors.get(label, "tab:purple"), label=label, zorder=3)
        right.annotate(label, (kl, gold_point), textcoords="offset points", xytext=(6, 6))
    right.set_xlabel("KL(π ‖ π_start) per reply, nats")
    right.set_ylabel("gold score (mean)")
    right.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
