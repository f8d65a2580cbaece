"""The demo report: OUTPUT/report.md, OUTPUT/report.html and OUTPUT/report.png.

`write_report(output_dir, summary, samples, dpo_metrics, rm_points)` turns the numbers a
run collected into a page a person can read in a minute: the headline table (gold score
before/after with standard errors, win rate, KL to the start model, reward-model held-out
accuracy, annotator agreement), timings per phase, the figure (`plots.demo_figure`) and
side-by-side sample responses on held-out prompts.

`samples` rows: {"prompt", "before", "after", "gold_before", "gold_after"} (one per shown
prompt). `summary` is the dict the demo also writes to summary.json.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefloop.eval.plots import demo_figure


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _one_line(text: str, limit: int = 220) -> str:
    """A response on one table line: newlines shown as ⏎, pipes escaped, long text cut."""
    text = text.replace("\r", "").replace("\n", " ⏎ ").replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _kl_text(summary: dict[str, Any]) -> str:
    """The KL estimate, with its standard error and the share of replies cut at the token cap when known."""
    text = _fmt(summary["kl_to_start"])
    if summary.get("kl_to_start_stderr") is not None:
        text += f" ± {summary['kl_to_start_stderr']:.3f}"
    if summary.get("after_capped_share") is not None:
        text += f" ({summary['after_capped_share']:.0%} of replies cut at max_new_tokens)"
    return text


def headline_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, value) rows of the results table, in reading order."""
    g = summary["gold"]
    rows = [
        ("gold score before (start model)", f"{g['before']:.3f} ± {g['before_stderr']:.3f}"),
        ("gold score after DPO", f"{g['after']:.3f} ± {g['after_stderr']:.3f}"),
        ("gold improvement (after − before)", f"{g['after'] - g['before']:+.3f}"),
        ("win rate of after over before (gold, per sample pair)", _fmt(g["win_rate"])),
        ("KL(π_after ‖ π_start) per response, nats", _kl_text(summary)),
    ]
    rm = summary.get("reward_model", {})
    if "heldout_accuracy_vs_gold" in rm:
        rows.append(
            (
                "reward model accuracy on held-out prompts (vs gold order)",
                _fmt(rm["heldout_accuracy_vs_gold"]),
            )
        )
    if "eval_accuracy_vs_annotator" in rm:
        rows.append(
            (
                "reward model accuracy on held-out rankings (vs annotator labels)",
                _fmt(rm["eval_accuracy_vs_annotator"]),
            )
        )
    if "score_before" in rm and "score_after" in rm:
        rows.append(
            ("reward model score before → after", f"{rm['score_before']:.3f} → {rm['score_after']:.3f}")
        )
    ann = summary.get("annotator", {})
    if ann.get("expected_agreement") is not None:
        rows.append(
            (
                "simulated annotator agreement with gold (observed / expected)",
                f"{_fmt(ann.get('agreement'))} / {_fmt(ann.get('expected_agreement'))}",
            )
        )
    elif ann:
        rows.append(
            (f"{ann.get('teacher', 'annotator')} teacher's agreement with gold", _fmt(ann.get("agreement")))
        )
    return rows


def write_markdown(
    path: Path, summary: dict[str, Any], samples: Sequence[dict[str, Any]], image_name: str = "report.png"
) -> Path:
    cfg = summary.get("config", {})
    lines = [
        "# prefloop demo report",
        "",
        f"Task: **{summary.get('task', '?')}** — the gold judge prefers warm, positive replies "
        "(VADER compound sentiment minus a length penalty). Training saw only the simulated "
        "annotator's noisy rankings, never the gold scores.",
        "",
        f"Policy `{cfg.get('model', '?')}`; {summary.get('num_train_prompts')} training prompts × "
        f"K={cfg.get('k')} samples; {summary.get('num_eval_prompts')} held-out prompts × "
        f"{cfg.get('eval_samples')} samples (temperature {cfg.get('temperature')}, seed {cfg.get('seed')}, "
        f"same prompts and seed before and after); annotator noise τ={cfg.get('annotator_noise')}; "
        f"DPO β={cfg.get('dpo_beta')}, lr={cfg.get('dpo_lr')}, pairs={cfg.get('pairs')}; "
        f"reward model `{cfg.get('reward_model')}`.",
        "",
        "## Results",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    lines += [f"| {name} | {value} |" for name, value in headline_rows(summary)]
    lines += [
        "",
        f"![demo figure]({image_name})",
        "",
        "## Time per phase",
        "",
        "| phase | seconds |",
        "|---|---|",
    ]
    timings = summary.get("timings_s", {})
    lines += [f"| {name} | {sec:.1f} |" for name, sec in timings.items()]
    lines += ["", "## Sample responses on held-out prompts", ""]
    for row in samples:
        lines += [
            f"**{_one_line(str(row['prompt']))}**",
            "",
            "| | gold | response |",
            "|---|---|---|",
            f"| before | {row['gold_before']:+.2f} | {_one_line(row['before'])} |",
            f"| after | {row['gold_after']:+.2f} | {_one_line(row['after'])} |",
            "",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_html(
    path: Path, summary: dict[str, Any], samples: Sequence[dict[str, Any]], image_name: str = "report.png"
) -> Path:
    """The same content as report.md as a standalone page (no scripts, no external files but the PNG)."""
    esc = html.escape
    rows = "".join(f"<tr><td>{esc(n)}</td><td>{esc(v)}</td></tr>" for n, v in headline_rows(summary))
    timings = "".join(
        f"<tr><td>{esc(k)}</td><td>{v:.1f}</td></tr>" for k, v in summary.get("timings_s", {}).items()
    )
    blocks = []
    for row in samples:
        blocks.append(
            f"<h3>{esc(str(row['prompt']))}</h3><table>"
            f"<tr><th>before {row['gold_before']:+.2f}</th><td>{esc(row['before'])}</td></tr>"
            f"<tr><th>after {row['gold_after']:+.2f}</th><td>{esc(row['after'])}</td></tr></table>"
        )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>prefloop demo report</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}
table{{border-collapse:collapse;margin:0.5em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}}
img{{max-width:100%}}</style></head><body>
<h1>prefloop demo report</h1>
<p>Task: {esc(str(summary.get("task", "?")))}. Training saw only the simulated annotator's noisy rankings.</p>
<h2>Results</h2><table>{rows}</table>
<img src="{esc(image_name)}" alt="demo figure">
<h2>Time per phase (s)</h2><table>{timings}</table>
<h2>Sample responses on held-out prompts</h2>{"".join(blocks)}
</body></html>
"""
    path.write_text(page)
    return path


def write_report(
    output_dir: str | Path,
    summary: dict[str, Any],
    samples: Sequence[dict[str, Any]],
    gold_before: Sequence[float],
    gold_after: Sequence[float],
    dpo_metrics: Sequence[dict[str, Any]],
    rm_points=(),
) -> dict[str, Path]:
    """Write report.png, report.md and report.html into `output_dir`; returns their paths."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    g = summary["gold"]
    # Bars share one axis, so only numbers in [-1, 1] go there; KL (nats) goes in the title.
    headline = {"gold before": g["before"], "gold after": g["after"], "win rate": g["win_rate"]}
    rm = summary.get("reward_model", {})
    if "heldout_accuracy_vs_gold" in rm:
        headline["RM accuracy"] = rm["heldout_accuracy_vs_gold"]
    if "agreement" in summary.get("annotator", {}):
        headline["annotator agreement"] = summary["annotator"]["agreement"]
    png = demo_figure(
        out / "report.png",
        gold_before,
        gold_after,
        dpo_metrics,
        rm_points,
        headline,
        title=f"prefloop demo: {summary.get('task', '')} — gold {g['before']:.3f} → {g['after']:.3f}, "
        f"KL to start {summary['kl_to_start']:.2f} nats",
    )
    md = write_markdown(out / "report.md", summary, samples)
    page = write_html(out / "report.html", summary, samples)
    return {"png": png, "md": md, "html": page}
