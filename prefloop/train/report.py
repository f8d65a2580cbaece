"""OUTPUT/report.html for every training run: config, curves, evaluation results and samples.

Written when a run finishes (`prefloop.train.run.save_final`) and again by
`prefloop eval report OUTPUT`. It reads only the run's files, so it also works on a run copied
from another machine:
- config.yaml: the resolved config (shown as a table);
- metrics.jsonl: one curve per numeric key, grouped into panels (loss; rewards and scores; KL
  and log-ratios; accuracies; learning rate; throughput = tokens / step_time_s);
- eval.json and any eval/*.json a `prefloop eval` command wrote: tables;
- samples.jsonl (optional; rows with step, prompt, completion and optionally reward/gold):
  the samples at each checkpoint.
The page is one self-contained file (the figure is embedded as a base64 PNG; no scripts).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

# Panels of the curve figure: a metric goes to the first panel whose keyword its name contains.
PANELS: list[tuple[str, tuple[str, ...]]] = [
    ("loss", ("loss",)),
    ("accuracy", ("accuracy", "win")),
    ("reward / score", ("reward", "score", "gold", "return", "advantage")),
    ("KL and log-ratios", ("kl", "logratio", "logps", "mismatch", "entropy", "clip")),
    ("learning rate", ("learning_rate",)),
    ("throughput (tokens/s)", ("tokens_per_s",)),
]
SKIP = {"step", "epoch", "step_time_s", "tokens"}


def _rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut off by a crash: the rest of the report still helps
    return rows


def curves(metrics: list[dict[str, Any]]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """{panel: {metric: [(step, value), ...]}} of the numeric metrics, throughput derived per step."""
    panels: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for row in metrics:
        step = row.get("step")
        if not isinstance(step, int):
            continue
        values = {k: v for k, v in row.items() if k not in SKIP}
        if row.get("step_time_s") and row.get("tokens"):
            values["tokens_per_s"] = row["tokens"] / row["step_time_s"]
        for key, value in values.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                continue
            panel = next((name for name, words in PANELS if any(w in key for w in words)), "other")
            panels.setdefault(panel, {}).setdefault(key, []).append((step, float(value)))
    return panels


def _figure_png(panels: dict[str, dict[str, list[tuple[int, float]]]]) -> bytes | None:
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = [name for name, _ in PANELS if name in panels] + (["other"] if "other" in panels else [])
    cols = 2
    rows = math.ceil(len(order) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(12, 3.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, order, strict=False):
        for key, points in sorted(panels[name].items())[:8]:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="." if len(xs) < 30 else None, label=key)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(order) :]:
        ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _table(data: dict[str, Any]) -> str:
    esc = html.escape
    cells = []
    for key, value in data.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, (dict, list)):
            value = json.dumps(value)[:300]
        cells.append(f"<tr><th>{esc(str(key))}</th><td>{esc(str(value))}</td></tr>")
    return "<table>" + "".join(cells) + "</table>"


def _config(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    import yaml

    loaded = yaml.safe_load(path.read_text())
    return loaded if isinstance(loaded, dict) else {}


def write_run_report(output_dir: str | Path, title: str | None = None) -> Path:
    """Write OUTPUT/report.html from the run's files; returns its path."""
    out = Path(output_dir)
    esc = html.escape
    config = _config(out / "config.yaml")
    metrics = _rows(out / "metrics.jsonl")
    png = _figure_png(curves(metrics))
    evals: dict[str, dict[str, Any]] = {}
    for path in [out / "eval.json", *sorted((out / "eval").glob("*.json"))]:
        if path.exists():
            try:
                evals[path.relative_to(out).as_posix()] = json.loads(path.read_text())
            except json.JSONDecodeError:
                continue
    samples = _rows(out / "samples.jsonl")
    last: dict[str, Any] = next((row for row in reversed(metrics) if "loss" in row), {})
    parts = [
        f"<h1>{esc(title or out.name)}</h1>",
        f"<p>{len(metrics)} logged steps; last step {esc(str(last.get('step', '-')))}, "
        f"loss {esc(str(last.get('loss', '-')))}.</p>",
    ]
    if png is not None:
        encoded = base64.b64encode(png).decode()
        parts.append(f'<h2>Curves</h2><img alt="training curves" src="data:image/png;base64,{encoded}">')
    for name, data in evals.items():
        parts.append(f"<h2>Evaluation: {esc(name)}</h2>{_table(data)}")
    if samples:
        parts.append("<h2>Samples</h2>")
        by_step: dict[Any, list[dict[str, Any]]] = {}
        for row in samples:
            by_step.setdefault(row.get("step", "-"), []).append(row)
        for step, rows in by_step.items():
            items = "".join(
                f"<tr><td>{esc(str(r.get('prompt', '')))}</td><td>{esc(str(r.get('completion', '')))}</td>"
                f"<td>{esc(', '.join(f'{k} {r[k]:.3g}' for k in ('reward', 'gold') if isinstance(r.get(k), (int, float))))}</td></tr>"
                for r in rows[:8]
            )
            parts.append(
                f"<h3>step {esc(str(step))}</h3><table><tr><th>prompt</th><th>completion</th><th></th></tr>{items}</table>"
            )
    if config:
        parts.append(f"<h2>Config</h2>{_table(config)}")
    page = (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>{esc(title or out.name)} · prefloop run report</title>"
        "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}"
        "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:left;vertical-align:top}img{max-width:100%}</style></head><body>"
        + "".join(parts)
        + "</body></html>\n"
    )
    path = out / "report.html"
    path.write_text(page)
    return path
