"""`prefloop eval winrate | frontier | overoptimization | leaderboard | report`.

Each subcommand samples the models it compares on the same held-out prompts with the same
seed (`prefloop.eval.sampling`), judges (`prefloop.eval.judging`), and writes a JSON result
plus a plot into `--output-dir`. The statistics are `prefloop.eval.stats` (see its notes for
every formula); docs/evaluation.md shows the figures they make on the embedded default.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prefloop.eval.sampling import Sampler, eval_prompts, run_models
from prefloop.eval.stats import (
    best_of_n_kl,
    fit_overoptimization,
    length_controlled_win_rate,
    win_rate,
)


@dataclass
class EvalCommon:
    """Fields every eval subcommand shares."""

    config: str | None = None
    """YAML file with values for any of these fields; flags override it."""
    data: str = "task:positive_replies"
    """Prompts: a data file with a prompt field, or task:NAME (the built-in task's held-out prompts, as the demo holds them out)."""
    num_prompts: int = 30
    """Prompts to use (the first N of the file; for task:NAME the held-out count); -1: all."""
    judge: str = "gold:positive_replies"
    """Who decides: any --reward form (gold:NAME, rm:DIR or reward:DIR, MODULE:FUNCTION, ...), ai:MODEL, or campaign (winrate only)."""
    max_new_tokens: int = 48
    """Maximum new tokens per sampled response."""
    temperature: float = 1.0
    """Sampling temperature (1.0: samples from the policy itself, as KL estimates need)."""
    seed: int = 0
    """Seed of the prompt split, the sampling and the bootstrap."""
    batch_size: int = 16
    """Sequences generated or scored together."""
    device: str = "auto"
    """'auto' (cuda when available, else cpu), 'cpu', 'cuda[:i]'."""
    output_dir: str = "outputs/eval"
    """Where the result JSON, the samples and the plot are written."""

    def sampler(self) -> Sampler:
        return Sampler(self.max_new_tokens, self.temperature, self.batch_size, self.seed, self.device)


@dataclass
class WinrateConfig(EvalCommon):
    """Win rate of a policy against a reference on held-out prompts, with a bootstrap 95% interval."""

    policy: str = ""
    """The model to evaluate: a training run's OUTPUT dir (its final/), a model dir, 'default' or 'tiny'."""
    reference: str = "default"
    """The model to compare against (same forms as --policy)."""
    num_samples: int = 1
    """Responses per prompt and model (pairs are matched by prompt and sample index)."""
    n_bootstrap: int = 2000
    """Bootstrap resamples for the interval."""
    db: str = "sqlite:///outputs/eval/winrate.db"
    """--judge campaign: the feedback database to create the campaign in (or read it from)."""
    annotators: list[str] = field(default_factory=list)
    """--judge campaign: annotator names to add (their tokens are printed)."""
    read_campaign: int | None = None
    """--judge campaign: read the judgments of this campaign id back and report the win rate."""


@dataclass
class FrontierConfig(EvalCommon):
    """Gold score (or any judge's reward) against KL to the reference for runs and their checkpoints."""

    runs: list[str] = field(default_factory=list)
    """Training runs (OUTPUT dirs: every checkpoint and final/) or model dirs to place on the frontier."""
    reference: str = "default"
    """π_ref of the KL (the start model of the runs)."""
    num_samples: int = 4
    """Samples per prompt and model (the KL and score are means over all of them)."""
    best_of_n: list[int] = field(default_factory=list)
    """Also add best-of-n points of the reference, picked by --proxy (analytic KL log n − (n−1)/n)."""
    proxy: str | None = None
    """Reward that picks the best of n (any --reward form); needed with --best-of-n."""


@dataclass
class OveroptimizationConfig(EvalCommon):
    """Proxy and gold score as the policy moves away from the start (Gao et al. 2022), with fitted forms."""

    policy: str = "default"
    """The start policy whose best-of-n samples are scored (a model or run dir)."""
    proxy: str = ""
    """The proxy reward being optimized: usually the trained reward model (rm:DIR)."""
    max_n: int = 64
    """Largest n of best-of-n (samples per prompt; n = 1, 2, 4, ... up to it)."""
    runs: list[str] = field(default_factory=list)
    """RL runs whose checkpoints add measured-KL points (fitted with the RL form)."""
    num_samples: int = 4
    """Samples per prompt for each checkpoint of --runs (its gold, proxy and KL are means over them)."""


@dataclass
class LeaderboardConfig(EvalCommon):
    """Bradley–Terry and Elo ratings of models / checkpoints from round-robin judgments on the same prompts."""

    models: list[str] = field(default_factory=list)
    """Models or training runs (a run contributes every checkpoint and final/)."""
    n_bootstrap: int = 200
    """Bootstrap resamples for the Bradley–Terry intervals."""


@dataclass
class ReportConfig:
    """Write (again) OUTPUT/report.html of a training run from its files."""

    config: str | None = None
    """YAML file with values for any of these fields; flags override it."""
    run: str = ""
    """The training run's OUTPUT dir."""


# --------------------------------------------------------------------------- helpers


def _write(out: Path, name: str, data: dict[str, Any]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _mean_se(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var / n)


def _refresh_report(out: Path) -> None:
    """When results went under RUN/eval, rewrite RUN/report.html so it shows them."""
    if out.name == "eval" and (out.parent / "config.yaml").exists():
        from prefloop.train.report import write_run_report

        write_run_report(out.parent)


def _run_output(policy: str, fallback: str) -> Path:
    """Results of a run's evaluation go under RUN/eval (so its report.html shows them)."""
    path = Path(policy)
    return path / "eval" if (path / "config.yaml").exists() else Path(fallback)


# --------------------------------------------------------------------------- winrate


def winrate(cfg: WinrateConfig) -> dict[str, Any]:
    from prefloop.eval.judging import make_judge

    if cfg.judge == "campaign" and cfg.read_campaign is not None:
        return winrate_from_campaign(cfg)
    if not cfg.policy:
        raise ValueError("--policy is required (a run's OUTPUT dir or a model)")
    # The judge first: a bad --judge fails before minutes of sampling.
    judge = make_judge(cfg.judge, device=cfg.device) if cfg.judge != "campaign" else None
    prompts = eval_prompts(cfg.data, cfg.num_prompts, cfg.seed)
    sampler = cfg.sampler()
    texts: dict[str, list[str]] = {}
    for role, spec in (("policy", cfg.policy), ("reference", cfg.reference)):
        tokenizer, model = sampler.load(spec)
        texts[role] = [c.text for c in sampler.sample(tokenizer, model, prompts, cfg.num_samples)]
        del model
    asked = [p for p in prompts for _ in range(cfg.num_samples)]
    out = _run_output(cfg.policy, cfg.output_dir)
    if judge is None:
        return winrate_campaign(cfg, asked, texts["policy"], texts["reference"], out)
    outcomes = judge.outcomes(asked, texts["policy"], texts["reference"])
    result = winrate_result(
        outcomes, texts["policy"], texts["reference"], cfg.n_bootstrap, cfg.seed, judge=judge.name
    )
    result.update(policy=cfg.policy, reference=cfg.reference, data=cfg.data)
    _write(out, "winrate.json", result)
    _refresh_report(out)
    _jsonl(
        out / "winrate_samples.jsonl",
        [
            {"prompt": p, "policy": a, "reference": b, "outcome": o}
            for p, a, b, o in zip(asked, texts["policy"], texts["reference"], outcomes, strict=True)
        ],
    )
    return result


def winrate_result(
    outcomes: list[float | None],
    policy_texts: list[str],
    reference_texts: list[str],
    n_bootstrap: int,
    seed: int,
    judge: str,
) -> dict[str, Any]:
    """Win rate, interval, tie rate and length-controlled win rate of judged pairs (None = abstained)."""
    kept = [
        (o, len(a), len(b))
        for o, a, b in zip(outcomes, policy_texts, reference_texts, strict=True)
        if o is not None
    ]
    if not kept:
        raise ValueError(f"the judge {judge} abstained on every pair: no win rate")
    wr = win_rate([o for o, _, _ in kept], n_bootstrap=n_bootstrap, seed=seed)
    lc, phi = length_controlled_win_rate(
        [o for o, _, _ in kept], [a for _, a, _ in kept], [b for _, _, b in kept]
    )
    return {
        **wr.as_dict(),
        "length_controlled_win_rate": lc,
        "length_coefficient": phi,
        "abstained": len(outcomes) - len(kept),
        "judge": judge,
        "length_unit": "characters",
    }


def winrate_campaign(
    cfg: WinrateConfig, prompts: list[Any], policy: list[str], reference: list[str], out: Path
) -> dict[str, Any]:
    """Create an anonymous pairwise feedback campaign of policy vs reference for people to judge."""
    from prefloop.feedback.admin import create_with_items
    from prefloop.feedback.schemas import CampaignIn
    from prefloop.feedback.store import Store, upgrade

    items = [
        {"prompt": p, "responses": [{"text": a, "model": "policy"}, {"text": b, "model": "reference"}]}
        for p, a, b in zip(prompts, policy, reference, strict=True)
    ]
    if cfg.db.startswith("sqlite:///"):
        Path(cfg.db[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    upgrade(cfg.db)
    store = Store(cfg.db)
    spec = CampaignIn(
        name=f"win rate: {cfg.policy} vs {cfg.reference}",
        feedback_types=["pairwise"],
        overlap=1,
        anonymous=True,
        instructions="Which response answers the prompt better? The models are hidden and shuffled.",
    )
    with store.write() as s:
        campaign, added = create_with_items(s, spec, items, cfg.annotators)
        cid = campaign.id
    store.dispose()
    result = {
        "campaign": cid,
        "db": cfg.db,
        "items": len(items),
        "annotators": [{"name": a["name"], "token": a["token"]} for a in (added or {}).get("annotators", [])],
        "next": f"prefloop eval winrate --judge campaign --db {cfg.db} --read-campaign {cid}",
    }
    _write(out, "winrate_campaign.json", result)
    return result


def winrate_from_campaign(cfg: WinrateConfig) -> dict[str, Any]:
    """The policy's win rate from the people's judgments of a campaign made by `winrate_campaign`."""
    from prefloop.feedback.quality import model_comparisons
    from prefloop.feedback.store import Store, campaign_judgments

    store = Store(cfg.db)
    with store.read() as s:
        judgments = campaign_judgments(s, int(cfg.read_campaign or 0))
    store.dispose()
    outcomes: list[float | None] = []
    for a, b, score in model_comparisons(judgments):
        if {a, b} == {"policy", "reference"}:
            outcomes.append(score if a == "policy" else 1.0 - score)
    if not outcomes:
        raise ValueError(f"campaign {cfg.read_campaign} in {cfg.db} has no policy-vs-reference judgments yet")
    wr = win_rate([o for o in outcomes if o is not None], n_bootstrap=cfg.n_bootstrap, seed=cfg.seed)
    result = {**wr.as_dict(), "judge": "campaign", "campaign": cfg.read_campaign, "db": cfg.db}
    _write(Path(cfg.output_dir), "winrate_campaign_result.json", result)
    return result


# --------------------------------------------------------------------------- frontier


def score_and_kl(
    cfg: EvalCommon,
    sampler: Sampler,
    spec: Any,
    step: int | None,
    reference: Any,
    prompts: list[Any],
    judges: dict[str, Any],
    num_samples: int,
) -> dict[str, Any]:
    """Each judge's mean score ± s.e. and KL(π ‖ π_ref) per reply, teacher-forced on the sampled ids."""
    from prefloop.eval.metrics import kl_to_reference

    tokenizer, model = sampler.load(spec, step)
    completions = sampler.sample(tokenizer, model, prompts, num_samples)
    asked = [prompts[c.prompt_index] for c in completions]
    row: dict[str, Any] = {"n": len(completions)}
    for name, judge in judges.items():
        mean, se = _mean_se(judge.scores(asked, [c.text for c in completions]))
        row[name], row[f"{name}_se"] = mean, se
    kl, terms = kl_to_reference(
        model,
        reference,
        [c.prompt_token_ids for c in completions],
        [c.token_ids for c in completions],
        batch_size=cfg.batch_size,
    )
    row["kl"], row["kl_se"] = kl, _mean_se(terms)[1]
    return row


def frontier(cfg: FrontierConfig) -> dict[str, Any]:
    from prefloop.eval.judging import ScoreJudge, make_judge

    if not cfg.runs and not cfg.best_of_n:
        raise ValueError("give runs to place (--runs RUN ...) and/or --best-of-n N ...")
    judge = make_judge(cfg.judge, device=cfg.device)
    if not isinstance(judge, ScoreJudge):
        raise ValueError("the frontier needs a scalar judge (gold:NAME, rm:DIR, ...), not a pairwise one")
    prompts = eval_prompts(cfg.data, cfg.num_prompts, cfg.seed)
    sampler = cfg.sampler()
    _, reference = sampler.load(cfg.reference)
    points: list[dict[str, Any]] = []
    for run in cfg.runs:
        method = _method_of(run)
        for label, spec, step in run_models(run):
            row = score_and_kl(
                cfg, sampler, spec, step, reference, prompts, {"score": judge}, cfg.num_samples
            )
            points.append({"run": str(run), "label": label, "method": method, "step": step, **row})
            print(
                f"{label}: score {row['score']:.3f} ± {row['score_se']:.3f}, KL {row['kl']:.3f}",
                file=sys.stderr,
            )
    if cfg.best_of_n:
        points += best_of_n_points(cfg, sampler, reference, prompts, judge)
    result = {"judge": judge.name, "reference": cfg.reference, "data": cfg.data, "points": points}
    out = Path(cfg.output_dir)
    _write(out, "frontier.json", result)
    plot_frontier(points, out / "frontier.png", judge.name)
    return result


def _method_of(run: str) -> str:
    import yaml

    from prefloop.eval.sampling import run_config_path

    path = run_config_path(run)
    if not path.exists():
        return "model"
    cfg = yaml.safe_load(path.read_text()) or {}
    return str(cfg.get("loss") or cfg.get("algorithm") or cfg.get("method") or path.parent.name)


def best_of_n_points(
    cfg: FrontierConfig, sampler: Sampler, reference: Any, prompts: list[Any], judge: Any
) -> list[dict[str, Any]]:
    """Best-of-n of the reference by the proxy: exact expected judge score, analytic KL."""
    from prefloop.eval.judging import ScoreJudge, make_judge

    if not cfg.proxy:
        raise ValueError("--best-of-n needs --proxy (the reward that picks the best)")
    proxy = make_judge(cfg.proxy, device=cfg.device)
    assert isinstance(proxy, ScoreJudge)
    n_max = max(cfg.best_of_n)
    tokenizer, _ = sampler.load(cfg.reference)
    completions = sampler.sample(tokenizer, reference, prompts, n_max)
    asked = [prompts[c.prompt_index] for c in completions]
    gold = judge.scores(asked, [c.text for c in completions])
    prox = proxy.scores(asked, [c.text for c in completions])
    rows = []
    for n in sorted(set(cfg.best_of_n)):
        per_prompt = [
            expected_best_of_n(prox[i * n_max : (i + 1) * n_max], gold[i * n_max : (i + 1) * n_max], n)
            for i in range(len(prompts))
        ]
        mean, se = _mean_se(per_prompt)
        rows.append(
            {
                "label": f"best-of-{n}",
                "method": "best-of-n",
                "n": n,
                "score": mean,
                "score_se": se,
                "kl": best_of_n_kl(n),
                "kl_se": 0.0,
            }
        )
    return rows


def expected_best_of_n(proxy: list[float], gold: list[float], n: int) -> float:
    """E[gold of the proxy-best of n samples drawn without replacement from these N], exactly.

    Sort by proxy ascending; the i-th (1-based) is the best of a random n-subset with probability
    C(i−1, n−1) / C(N, n). Ties in the proxy are broken by position (stable sort).
    """
    size = len(proxy)
    if not 1 <= n <= size:
        raise ValueError(f"n must be in [1, {size}], got {n}")
    order = sorted(range(size), key=lambda i: proxy[i])
    total = math.comb(size, n)
    return sum(gold[j] * math.comb(i, n - 1) / total for i, j in enumerate(order))


def plot_frontier(points: list[dict[str, Any]], path: Path, judge: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    by_method: dict[str, list[dict[str, Any]]] = {}
    for p in points:
        by_method.setdefault(p["method"], []).append(p)
    for method, rows in sorted(by_method.items()):
        rows = sorted(rows, key=lambda r: r["kl"])
        ax.errorbar(
            [r["kl"] for r in rows],
            [r["score"] for r in rows],
            yerr=[r["score_se"] for r in rows],
            marker="o",
            capsize=3,
            label=method,
        )
        for r in rows:
            ax.annotate(
                r["label"], (r["kl"], r["score"]), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
    ax.set_xlabel("KL(π ‖ π_ref) per reply (nats)")
    ax.set_ylabel(f"score ({judge})")
    ax.set_title("Reward–KL frontier")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- over-optimization


def overoptimization(cfg: OveroptimizationConfig) -> dict[str, Any]:
    from prefloop.eval.judging import ScoreJudge, make_judge

    if not cfg.proxy:
        raise ValueError("--proxy is required: the reward being optimized (e.g. rm:runs/rm)")
    gold = make_judge(cfg.judge, device=cfg.device)
    proxy = make_judge(cfg.proxy, device=cfg.device)
    if not (isinstance(gold, ScoreJudge) and isinstance(proxy, ScoreJudge)):
        raise ValueError("over-optimization needs scalar judges for both --judge (gold) and --proxy")
    prompts = eval_prompts(cfg.data, cfg.num_prompts, cfg.seed)
    sampler = cfg.sampler()
    tokenizer, model = sampler.load(cfg.policy)
    completions = sampler.sample(tokenizer, model, prompts, cfg.max_n)
    asked = [prompts[c.prompt_index] for c in completions]
    g = gold.scores(asked, [c.text for c in completions])
    p = proxy.scores(asked, [c.text for c in completions])
    ns = [n for n in (2**k for k in range(20)) if n <= cfg.max_n]
    bon = []
    for n in ns:
        per_gold = [
            expected_best_of_n(
                p[i * cfg.max_n : (i + 1) * cfg.max_n], g[i * cfg.max_n : (i + 1) * cfg.max_n], n
            )
            for i in range(len(prompts))
        ]
        per_proxy = [
            expected_best_of_n(
                p[i * cfg.max_n : (i + 1) * cfg.max_n], p[i * cfg.max_n : (i + 1) * cfg.max_n], n
            )
            for i in range(len(prompts))
        ]
        kl = best_of_n_kl(n)
        bon.append(
            {
                "n": n,
                "kl": kl,
                "d": math.sqrt(kl),
                "gold": _mean_se(per_gold)[0],
                "proxy": _mean_se(per_proxy)[0],
            }
        )
    base_gold, base_proxy = bon[0]["gold"], bon[0]["proxy"]
    result: dict[str, Any] = {"judge": gold.name, "proxy": proxy.name, "policy": cfg.policy, "best_of_n": bon}
    if len(bon) >= 2:
        fit_g = fit_overoptimization([r["d"] for r in bon], [r["gold"] - base_gold for r in bon], "bon")
        fit_p = fit_overoptimization([r["d"] for r in bon], [r["proxy"] - base_proxy for r in bon], "bon")
        result["fit_best_of_n"] = {"gold": asdict(fit_g), "proxy": asdict(fit_p)}
    rl_points = []
    if cfg.runs:
        for run in cfg.runs:
            for label, spec, step in run_models(run):
                row = score_and_kl(
                    cfg, sampler, spec, step, model, prompts, {"gold": gold, "proxy": proxy}, cfg.num_samples
                )
                kl = max(row["kl"], 0.0)  # a Monte Carlo estimate can dip below 0 near the start
                rl_points.append(
                    {
                        "label": label,
                        "kl": kl,
                        "kl_se": row["kl_se"],
                        "d": math.sqrt(kl),
                        "gold": row["gold"],
                        "gold_se": row["gold_se"],
                        "proxy": row["proxy"],
                        "proxy_se": row["proxy_se"],
                    }
                )
        result["rl"] = rl_points
        if len(rl_points) >= 2:
            fit_rl = fit_overoptimization(
                [r["d"] for r in rl_points], [r["gold"] - base_gold for r in rl_points], "rl"
            )
            result["fit_rl"] = {"gold": asdict(fit_rl)}
    result["gold_peak"] = {
        name: _peak_words(result[key]["gold"], points)
        for name, key, points in (("best-of-n", "fit_best_of_n", bon), ("rl", "fit_rl", rl_points))
        if key in result
    }
    out = Path(cfg.output_dir)
    _write(out, "overoptimization.json", result)
    plot_overoptimization(result, base_gold, base_proxy, out / "overoptimization.png")
    return result


def _peak_words(fit: dict[str, Any], points: list[dict[str, Any]]) -> str:
    """Where the gold score peaks, in words: measured at a point, fitted within the points, or not yet."""
    top = max(points, key=lambda r: r["gold"])
    last = max(points, key=lambda r: r["kl"])
    if fit["peak_in_range"]:
        return (
            f"fitted peak at KL {fit['kl_peak']:.2f} nats (gold +{fit['gold_peak']:.3f} over the start); "
            f"best measured point at KL {top['kl']:.2f}"
        )
    if top is last:
        return f"no peak: gold still rising at the largest KL measured ({last['kl']:.2f} nats)"
    return (
        f"best measured point at KL {top['kl']:.2f} nats; the fitted form does not peak within "
        f"the points (up to KL {last['kl']:.2f})"
    )


def plot_overoptimization(result: dict[str, Any], base_gold: float, base_proxy: float, path: Path) -> None:
    import numpy as np

    from prefloop.eval.stats import OveroptimizationFit

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    bon = result["best_of_n"]
    d = np.array([r["d"] for r in bon])
    ax.plot(d, [r["gold"] - base_gold for r in bon], "o", color="#2a7", label="gold, best-of-n")
    ax.plot(d, [r["proxy"] - base_proxy for r in bon], "s", color="#27c", label="proxy, best-of-n")
    rl = result.get("rl", [])
    grid = np.linspace(0, max(float(d.max()), 1e-3) * 1.05, 200)  # each fit drawn over its own points
    for key, color in (("gold", "#2a7"), ("proxy", "#27c")):
        fit = result.get("fit_best_of_n", {}).get(key)
        if fit:
            f = OveroptimizationFit(**fit)
            ax.plot(
                grid,
                f.predict(grid),
                "-",
                color=color,
                alpha=0.7,
                label=f"{key} fit d(α−βd): α={f.alpha:.3f}, β={f.beta:.3f}",
            )
            if key == "gold" and f.peak_in_range:
                ax.axvline(f.d_peak, color=color, ls=":", alpha=0.6)
    if rl:
        ax.errorbar(
            [r["d"] for r in rl],
            [r["gold"] - base_gold for r in rl],
            yerr=[r.get("gold_se", 0.0) for r in rl],
            fmt="^",
            color="#c52",
            capsize=3,
            label="gold, RL checkpoints",
        )
        ax.plot(
            [r["d"] for r in rl],
            [r["proxy"] - base_proxy for r in rl],
            "v",
            color="#85c",
            label="proxy, RL checkpoints",
        )
    if result.get("fit_rl"):
        f = OveroptimizationFit(**result["fit_rl"]["gold"])
        rl_grid = np.linspace(0, max(r["d"] for r in rl) * 1.05, 200)
        ax.plot(
            rl_grid,
            f.predict(rl_grid),
            "--",
            color="#c52",
            label=f"gold, RL fit d(α−β log d): α={f.alpha:.3f}, β={f.beta:.3f}",
        )
    ax.set_xlabel("d = √KL(π ‖ π_start)")
    ax.set_ylabel("score − score at the start")
    ax.set_title("Reward over-optimization")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- leaderboard


def leaderboard(cfg: LeaderboardConfig) -> dict[str, Any]:
    from prefloop.eval.judging import make_judge
    from prefloop.feedback.quality import comparison_board, leaderboard_png

    if len(cfg.models) < 1:
        raise ValueError("give models or runs to rank (--models A B ...)")
    judge = make_judge(cfg.judge, device=cfg.device)  # before sampling: a bad --judge fails at once
    prompts = eval_prompts(cfg.data, cfg.num_prompts, cfg.seed)
    sampler = cfg.sampler()
    texts: dict[str, list[str]] = {}
    for spec in cfg.models:
        for label, path, step in run_models(spec):
            tokenizer, model = sampler.load(path, step)
            texts[label] = [c.text for c in sampler.sample(tokenizer, model, prompts, 1)]
            del model
    if len(texts) < 2:
        raise ValueError("a leaderboard needs at least two models")
    names = list(texts)
    comparisons: list[tuple[str, str, float]] = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            for o in judge.outcomes(prompts, texts[a], texts[b]):
                if o is not None:
                    comparisons.append((a, b, o))
    board = comparison_board(comparisons, n_bootstrap=cfg.n_bootstrap, seed=cfg.seed)
    board["judge"] = judge.name
    out = Path(cfg.output_dir)
    _write(out, "leaderboard.json", board)
    (out / "leaderboard.png").write_bytes(leaderboard_png(board))
    return board


# --------------------------------------------------------------------------- main

SUBCOMMANDS: dict[str, tuple[type, Any, str]] = {
    "winrate": (
        WinrateConfig,
        winrate,
        "win rate of a policy vs a reference, with interval and length control",
    ),
    "frontier": (
        FrontierConfig,
        frontier,
        "score against KL to the reference for runs, checkpoints, best-of-n",
    ),
    "overoptimization": (
        OveroptimizationConfig,
        overoptimization,
        "proxy vs gold as KL grows, Gao et al. fits",
    ),
    "leaderboard": (LeaderboardConfig, leaderboard, "Bradley–Terry / Elo of models and checkpoints"),
    "report": (ReportConfig, None, "write a run's report.html again"),
}


def main(argv: list[str], command: str = "eval") -> None:
    from prefloop.cli import fail
    from prefloop.config import ConfigError, parse_args
    from prefloop.data.io import DataError
    from prefloop.models.load import ModelLoadError

    if not argv or argv[0] not in SUBCOMMANDS:
        width = max(map(len, SUBCOMMANDS))
        lines = [f"usage: prefloop {command} <subcommand> [--help] [flags]", "", "subcommands:"]
        lines += [f"  {name.ljust(width)}  {doc}" for name, (_, _, doc) in SUBCOMMANDS.items()]
        print("\n".join(lines), file=sys.stderr if argv else sys.stdout)
        if argv and argv[0] not in ("-h", "--help"):
            raise SystemExit(2)
        return
    sub, rest = argv[0], argv[1:]
    cls, fn, _ = SUBCOMMANDS[sub]
    cfg: Any = parse_args(cls, rest, prog=f"prefloop {command} {sub}", description=cls.__doc__)
    try:
        if sub == "report":
            from prefloop.train.report import write_run_report

            if not Path(cfg.run).is_dir():
                raise FileNotFoundError(f"{cfg.run}: not a run directory")
            print(write_run_report(cfg.run))
            return
        result = fn(cfg)
    except (ValueError, DataError, ConfigError, ModelLoadError, FileNotFoundError) as exc:
        fail(str(exc))
    print(json.dumps(_summary(result), indent=2))


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    """What is printed: the result without long per-point lists."""
    return {k: v for k, v in result.items() if not (isinstance(v, list) and len(v) > 12)}
