"""`prefloop judge-report`: how good is an AI judge? Agreement with the gold scorer and a simulated pool.

On pairs of replies to the same prompt (read from `--data`, the JSONL `prefloop generate`
writes, or sampled here from `--policy` on the demo's task), the judge (`--judge`: the embedded
default, a path, or an OpenAI-compatible URL) labels every pair in both orders; the gold scorer
(VADER sentiment, the demo's hidden judge) and B-Pref's simulated teachers label the same pairs.

    gold agreement      over pairs whose gold scores differ: 1 when the verdict matches the
                        gold order, ½ for a tie, 0 otherwise (the same rule as the demo's
                        annotator agreement)
    decisive accuracy   the same over the pairs the judge did not call a tie
    soft agreement      mean P(gold winner) under the judge's soft label
    agreement with X    over pairs neither skipped: 1 same verdict, ½ when exactly one is a
                        tie, 0 otherwise (X = each simulated teacher)
    position-bias rate  share of pairs whose two orders disagree in verdict (= tie rate here)
    first-position rate share of ordered questions answered with the first-shown reply
    labels/s            pairs judged per second on a cold cache, then the rerun's cache hits

Written to OUTPUT/judge_report.json and judge_report.md.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prefloop.teachers.factory import TeacherOptions, make_teacher


@dataclass
class JudgeReportConfig(TeacherOptions):
    """Measure an AI judge against the gold scorer and B-Pref's simulated teachers."""

    config: str | None = None
    """YAML file with values for any of these fields; flags override it."""
    data: str | None = None
    """JSONL of {prompt, responses: [...]} (as `prefloop generate` writes); None: sample from --policy."""
    policy: str = "default"
    """Model that samples the replies when --data is not given."""
    num_prompts: int = 40
    """Prompts of the demo's task to sample (when --data is not given)."""
    num_responses: int = 4
    """Replies per prompt; pairs are (1st, 2nd), (3rd, 4th), ..."""
    max_new_tokens: int = 32
    """Tokens per sampled reply."""
    pool_beta: float = 4.0
    """β of the simulated 'stoc' teacher in gold units (4 = the demo annotator's τ = 0.25)."""
    output_dir: str = "outputs/judge_report"
    """Where judge_report.json and judge_report.md go."""


def _load_pairs(cfg: JudgeReportConfig) -> list[tuple[Any, str, str]]:
    if cfg.data:
        from prefloop.data.validate import DataError

        groups = []
        path = Path(cfg.data)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: data file not found")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise DataError(f"{path}:{n}: not valid JSON: {exc}") from None
            rs = row.get("responses")
            if "prompt" not in row or not isinstance(rs, list):
                raise DataError(f"{path}:{n}: field 'responses': expected prompt and a list of responses")
            groups.append((row["prompt"], [r["text"] if isinstance(r, dict) else str(r) for r in rs]))
    else:
        from prefloop.generation.hf import HFGenerator
        from prefloop.models.load import load_causal_lm, load_tokenizer
        from prefloop.tasks import task_prompts

        prompts = task_prompts("positive_replies")[: cfg.num_prompts]
        gen = HFGenerator(
            load_causal_lm(cfg.policy).eval(),
            load_tokenizer(cfg.policy),
            max_new_tokens=cfg.max_new_tokens,
            temperature=1.0,
            batch_size=32,
        )
        completions = gen.generate_grouped(prompts, cfg.num_responses, seed=cfg.seed)
        groups = [(p, [c.text for c in cs]) for p, cs in zip(prompts, completions)]
    return [(p, rs[i], rs[i + 1]) for p, rs in groups for i in range(0, len(rs) - 1, 2)]


def verdict_agreement(x: str, y: str) -> float | None:
    """1 same verdict, ½ when exactly one is a tie, 0 opposite; None when either skipped."""
    if "skip" in (x, y):
        return None
    if x == y:
        return 1.0
    return 0.5 if "tie" in (x, y) else 0.0


def gold_agreement(verdicts: list[str], gold_diffs: list[float]) -> tuple[float, float, int]:
    """(agreement, decisive accuracy, pairs counted) against the gold order (pairs with Δg ≠ 0)."""
    scores, decisive = [], []
    for v, d in zip(verdicts, gold_diffs):
        if d == 0 or v == "skip":
            continue
        truth = "a" if d > 0 else "b"
        scores.append(1.0 if v == truth else 0.5 if v == "tie" else 0.0)
        if v != "tie":
            decisive.append(float(v == truth))
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    return mean(scores), mean(decisive), len(scores)


def run(cfg: JudgeReportConfig) -> dict[str, Any]:
    from prefloop.rewards.gold import gold_judge
    from prefloop.teachers.simulated import bpref_pool

    cfg.teacher = "ai"
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    pairs = _load_pairs(cfg)
    if not pairs:
        raise ValueError("no pairs to judge: each prompt needs at least two responses")
    gold = gold_judge(cfg.gold)
    g_a = gold([p for p, _, _ in pairs], [a for _, a, _ in pairs])
    g_b = gold([p for p, _, _ in pairs], [b for _, _, b in pairs])
    diffs = [x - y for x, y in zip(g_a, g_b)]
    judge = make_teacher(cfg)
    print(f"judging {len(pairs)} pairs in both orders with {judge.name} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    prefs = judge.compare_batch(pairs)
    cold_s = time.perf_counter() - started
    cold = judge.summary()
    rerun_started = time.perf_counter()
    before_hits, before_queries = judge.stats["cache_hits"], judge.stats["queries"]
    judge.compare_batch(pairs)
    rerun_s = time.perf_counter() - rerun_started
    rerun_hits = judge.stats["cache_hits"] - before_hits
    rerun_queries = judge.stats["queries"] - before_queries

    verdicts = [p.which for p in prefs]
    agree, decisive, counted = gold_agreement(verdicts, diffs)
    soft = [p.probability if d > 0 else 1 - p.probability for p, d in zip(prefs, diffs) if d != 0]
    mean_return = sum(abs(x) for x in g_a + g_b) / (2 * len(pairs))
    pool = bpref_pool(gold, mean_return=mean_return, beta=cfg.pool_beta, seed=cfg.seed)
    members = {}
    for member in pool.members:
        theirs = [member.compare_returns(x, y).which for x, y in zip(g_a, g_b)]
        scores = [s for s in map(verdict_agreement, verdicts, theirs) if s is not None]
        m_gold, _, _ = gold_agreement(theirs, diffs)
        members[member.name] = {
            "judge_agreement": sum(scores) / len(scores) if scores else None,
            "gold_agreement": m_gold,
            "n": len(scores),
        }
    report = {
        "judge": judge.name,
        "pairs": len(pairs),
        "gold_pairs_counted": counted,
        "gold_agreement": agree,
        "decisive_accuracy": decisive,
        "soft_agreement": sum(soft) / len(soft) if soft else None,
        "tie_rate": cold["tie_rate"],
        "position_bias_rate": cold["position_bias_rate"],
        "first_position_rate": cold["first_position_win_rate"],
        "labels_per_s_cold": len(pairs) / cold_s,
        "cold_cache_hits": cold["cache_hits"],
        "rerun_cache_hits": rerun_hits,
        "rerun_queries": rerun_queries,
        "rerun_s": rerun_s,
        "simulated_pool": members,
        "config": asdict(cfg),
    }
    (out / "judge_report.json").write_text(json.dumps(report, indent=2))
    (out / "judge_report.md").write_text(report_markdown(report))
    return report


def report_markdown(r: dict[str, Any]) -> str:
    f = lambda x: "—" if x is None else f"{x:.3f}"  # noqa: E731
    lines = [
        f"# Judge report: {r['judge']}",
        "",
        f"{r['pairs']} pairs, each asked in both orders; {r['gold_pairs_counted']} with different gold scores.",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| agreement with gold (tie = ½) | {f(r['gold_agreement'])} |",
        f"| accuracy on decisive (non-tie) verdicts | {f(r['decisive_accuracy'])} |",
        f"| soft agreement, mean P(gold winner) | {f(r['soft_agreement'])} |",
        f"| tie rate (= position-bias rate: the orders disagree) | {f(r['tie_rate'])} |",
        f"| first-shown reply chosen, share of ordered questions | {f(r['first_position_rate'])} |",
        f"| labels per second (cold cache) | {r['labels_per_s_cold']:.2f} |",
        f"| rerun: cache hits / queries | {r['rerun_cache_hits']} / {r['rerun_queries']} ({r['rerun_s']:.2f} s) |",
        "",
        "| simulated teacher | its agreement with gold | agreement with the judge |",
        "|---|---:|---:|",
    ]
    for name, m in r["simulated_pool"].items():
        lines.append(f"| {name} | {f(m['gold_agreement'])} | {f(m['judge_agreement'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str], command: str = "judge-report") -> None:
    from prefloop.cli import fail
    from prefloop.config import ConfigError, parse_args
    from prefloop.data.validate import DataError
    from prefloop.models.load import ModelLoadError
    from prefloop.teachers.judge import JudgeError

    cfg = parse_args(
        JudgeReportConfig, argv, prog=f"prefloop {command}", description=JudgeReportConfig.__doc__
    )
    try:
        report = run(cfg)
    except (ConfigError, DataError, ValueError, FileNotFoundError, ModelLoadError, JudgeError) as exc:
        fail(str(exc))
    print(report_markdown(report))
