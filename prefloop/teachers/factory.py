"""Build a teacher from command-line settings: `make_teacher("ai" | "sim", ...)`.

Shared by `prefloop label`, `prefloop judge-report`, the demo and the constitutional commands, so
"ai:smollm2" or "sim:mistake-0.1" means the same teacher everywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

SimKind = Literal["oracle", "stoc", "mistake", "skip", "equal", "myopic"]


@dataclass
class TeacherOptions:
    """Who labels: an AI judge or a simulated B-Pref annotator over a gold scorer."""

    teacher: Literal["ai", "sim"] = "ai"
    """'ai': an LLM judge (--judge); 'sim': a simulated annotator over the gold scorer (--sim)."""
    judge: str = "default"
    """AI judge: 'default' (embedded SmolLM2-135M-Instruct), 'tiny', a local path, or an OpenAI-compatible URL (http://host:port/v1)."""
    judge_model: str = "default"
    """The 'model' field sent to an HTTP judge endpoint."""
    judge_api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the HTTP judge's API key (unset: no key sent)."""
    judge_timeout: float = 60.0
    """Seconds per HTTP judge request."""
    judge_retries: int = 2
    """Extra attempts after a timeout, connection error, 429 or 5xx."""
    rubric: str | None = None
    """A text file with the judge's rubric (system prompt); None: the built-in helpful/harmless/concise rubric."""
    reasoning: bool = False
    """Let the judge write a short explanation before the verdict."""
    judge_cache: str = "judge_cache.sqlite"
    """SQLite file caching the judge's answers (reruns cost nothing; '' = no cache)."""
    judge_batch_size: int = 8
    """Chats per judge call."""
    sim: SimKind = "mistake"
    """Simulated annotator: one of B-Pref's teachers with its published parameters."""
    sim_beta: float | None = None
    """β of the 'stoc' teacher (None: B-Pref's 1.0, in gold-score units)."""
    sim_mean_return: float = 0.5
    """B-Pref's mean return that scales δ_skip and δ_equal (0.1 x this)."""
    gold: Literal["sentiment"] = "sentiment"
    """Gold scorer behind the simulated annotator."""
    seed: int = 0
    """Seed of the simulated annotator."""
    device: str = "cpu"
    """Device of an in-process judge model."""


def make_teacher(opts: TeacherOptions):
    """The teacher `opts` describes (an `AIJudge` or a `SimulatedTeacher`)."""
    if opts.teacher == "sim":
        from prefloop.rewards.gold import gold_judge
        from prefloop.teachers.simulated import bpref_teacher

        return bpref_teacher(
            opts.sim,
            gold_judge(opts.gold),
            mean_return=opts.sim_mean_return,
            beta=opts.sim_beta,
            seed=opts.seed,
        )
    from prefloop.teachers.judge import DEFAULT_RUBRIC, AIJudge, make_backend

    rubric = DEFAULT_RUBRIC
    if opts.rubric:
        path = Path(opts.rubric)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: rubric file not found")
        rubric = path.read_text(encoding="utf-8").strip()
        if not rubric:
            raise ValueError(f"{path}: the rubric file is empty")
    backend = make_backend(
        opts.judge,
        model=opts.judge_model,
        api_key=os.environ.get(opts.judge_api_key_env) or None,
        timeout=opts.judge_timeout,
        retries=opts.judge_retries,
        device=opts.device,
        batch_size=opts.judge_batch_size,
    )
    return AIJudge(
        backend,
        rubric=rubric,
        reasoning=opts.reasoning,
        cache=opts.judge_cache or None,
        batch_size=opts.judge_batch_size,
    )
