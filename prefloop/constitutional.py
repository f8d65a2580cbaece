"""`prefloop constitutional sl|rl`: Constitutional AI (Bai et al. 2022, "Constitutional AI:
Harmlessness from AI Feedback") on the existing loops.

Supervised stage (`sl`), per training prompt x:
    y_0 ~ π(· | x)                                    (sampled, temperature `temperature`)
    for round r = 1..R:  principle c_r drawn at random from the constitution
        critique_r = π(x, y_{r−1}, c_r.critique)      (greedy)
        y_r        = π(x, y_{r−1}, c_r.critique, critique_r, c_r.revision)   (greedy)
    SFT (`prefloop.train.sft.train`) on the demonstrations (x, y_R).

RL stage (`rl`), per training prompt x: two samples (a, b) ~ π; K principles drawn at random;
for each, the AI judge (`prefloop.teachers.judge.AIJudge`, both orders, soft label) answers the
principle's question in a multiple-choice "(A)/(B)" format; the soft labels are averaged over
the K principles ("ensembled"): p = mean_k p_k, and with a reasoning step each p_k is clamped
to [0.4, 0.6] first (the paper's remedy for over-confident chain-of-thought labels). Then
    preference model: soft-label Bradley–Terry (`prefloop.train.reward_model`, target p)
    policy:           DPO (`prefloop.train.preference`) on the pairs, chosen = the side with p > ½,
                      or PPO (`prefloop.train.online`) against the preference model (--policy-step ppo).

Both write OUTPUT/report.md and report.json comparing the start model and the trained one on
held-out red-team prompts (same sampling seed): a programmatic gold that fits the example
constitution (VADER sentiment: warmer, kinder replies score higher), the AI judge's win rate
(after vs before, under the constitution's preamble) and, for `rl`, the preference model's score.

Policy step: DPO on the AI-labelled pairs (default), or `--policy-step ppo`: PPO
(`prefloop.train.online`) against the soft-label preference model, as in the paper. Critiques and revisions come from the policy itself (as
in the paper), which a 135M model does poorly — see docs/algorithms/constitutional.md.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

CHOICE_TEMPLATE = (
    "Consider the user's request and the two replies. {question}\n"
    "Options:\n(A) Reply A\n(B) Reply B\n"
    "Answer with the letter of the better option: A or B."
)


@dataclass
class ConstitutionalSLConfig:
    """Constitutional AI, supervised stage: sample, critique and revise by principles, SFT on the revisions."""

    config: str | None = None
    """YAML file with values for any of these fields; flags override it."""
    model: str = "default"
    """Policy: 'default' (embedded SmolLM2-135M-Instruct), 'tiny', a path or hub id."""
    constitution: str = "examples/constitutional/constitution.yaml"
    """The constitution (YAML: preamble, principles with critique/revision/choice)."""
    prompts: str = "examples/constitutional/red_team.jsonl"
    """Red-team prompts (JSONL with a 'prompt' field)."""
    output_dir: str = "outputs/constitutional_sl"
    """Where revisions.jsonl, sft/, report.md and report.json are written."""
    rounds: int = 1
    """Critique-revision rounds per reply."""
    num_eval_prompts: int = 6
    """Prompts held out for the before/after report (never trained on)."""
    eval_samples: int = 4
    """Replies per held-out prompt and model in the before/after report (paired by prompt and index)."""
    max_new_tokens: int = 64
    """Tokens per reply, critique and revision."""
    temperature: float = 0.7
    """Sampling temperature of the first reply and of the before/after samples."""
    judge: str | None = "default"
    """AI judge for the report: 'default', 'tiny', a path or an OpenAI-compatible URL; None: no judge."""
    judge_cache: str = "judge_cache.sqlite"
    """SQLite cache of the judge's answers, relative to output_dir ('' = none); reruns cost nothing."""
    epochs: int = 2
    """SFT passes over the revisions."""
    max_steps: int = -1
    """SFT optimizer steps (-1: epochs)."""
    learning_rate: float = 1e-4
    """SFT peak learning rate (LoRA)."""
    lora: bool = True
    """Train LoRA adapters in SFT."""
    batch_size: int = 4
    """SFT batch size."""
    seed: int = 0
    """Seed for the split, sampling and principle draws."""
    device: str = "cpu"
    """Device for the policy and the judge."""


@dataclass
class ConstitutionalRLConfig:
    """Constitutional AI, RL stage: AI preference labels by principles, a soft-label preference model, then DPO."""

    config: str | None = None
    """YAML file with values for any of these fields; flags override it."""
    model: str = "default"
    """Policy to improve (e.g. the output of `constitutional sl`: OUTPUT/sft/final)."""
    constitution: str = "examples/constitutional/constitution.yaml"
    """The constitution (YAML)."""
    prompts: str = "examples/constitutional/red_team.jsonl"
    """Red-team prompts (JSONL with a 'prompt' field)."""
    output_dir: str = "outputs/constitutional_rl"
    """Where labels.jsonl, preference_model/, dpo/, report.md and report.json are written."""
    judge: str = "default"
    """AI labeler: 'default', 'tiny', a path or an OpenAI-compatible URL."""
    judge_cache: str = "judge_cache.sqlite"
    """SQLite cache of the judge's answers, relative to output_dir ('' = none); reruns cost nothing."""
    principles_per_pair: int = 4
    """Principles each pair is judged under; their soft labels are averaged."""
    reasoning: bool = False
    """Judge with a reasoning step; each principle's label is then clamped to [0.4, 0.6]."""
    num_eval_prompts: int = 6
    """Prompts held out for the before/after report."""
    eval_samples: int = 4
    """Replies per held-out prompt and model in the before/after report (paired by prompt and index)."""
    max_new_tokens: int = 48
    """Tokens per sampled reply."""
    temperature: float = 1.0
    """Sampling temperature of the pairs and of the before/after samples."""
    preference_model: str = "minilm"
    """Backbone of the soft-label preference model ('minilm', 'tiny-reward', a path ...)."""
    pm_epochs: int = 3
    """Preference-model passes."""
    policy_step: Literal["dpo", "ppo"] = "dpo"
    """Policy optimization: DPO on the AI-labelled pairs, or PPO against the preference model (the paper's)."""
    ppo_steps: int = 20
    """PPO rollout steps (--policy-step ppo)."""
    ppo_lr: float = 1e-5
    """PPO learning rate (LoRA: ~1e-4)."""
    dpo_epochs: int = 2
    """DPO passes over the pairs."""
    dpo_max_steps: int = -1
    """DPO optimizer steps (-1: dpo_epochs)."""
    dpo_lr: float = 5e-4
    """DPO learning rate (LoRA)."""
    dpo_beta: float = 0.1
    """DPO β."""
    lora: bool = True
    """LoRA adapters in DPO."""
    seed: int = 0
    """Seed for the split, sampling and principle draws."""
    device: str = "cpu"
    """Device for the policy and the judge."""


def _split(prompts: list[Any], n_eval: int, seed: int) -> tuple[list[Any], list[Any]]:
    if not 0 <= n_eval < len(prompts):
        raise ValueError(
            f"num_eval_prompts must be in 0..{len(prompts) - 1} for {len(prompts)} prompts, got {n_eval}"
        )
    order = list(range(len(prompts)))
    random.Random(seed).shuffle(order)
    return [prompts[i] for i in order[n_eval:]], [prompts[i] for i in order[:n_eval]]


def _judge(name: str, out: Path, cache: str, device: str, **kwargs):
    """The AI judge, its answers cached in OUTPUT/`cache` (as the demo's; '' = no cache)."""
    from prefloop.teachers.judge import AIJudge, make_backend

    return AIJudge(make_backend(name, device=device), cache=(out / cache) if cache else None, **kwargs)


def critique_and_revise(
    lm, constitution, prompts: list[Any], replies: list[str], rounds: int, rng: random.Random, max_tokens: int
):
    """R rounds of critique + revision per reply (batched); returns the chain per prompt."""
    chains = [{"prompt": p, "initial": y, "steps": []} for p, y in zip(prompts, replies)]
    current = list(replies)
    for _ in range(rounds):
        picks = [rng.choice(constitution.principles) for _ in prompts]
        base = [
            [{"role": "user", "content": str(p)}, {"role": "assistant", "content": y}]
            for p, y in zip(prompts, current)
        ]
        critiques = lm.chat(
            [b + [{"role": "user", "content": c.critique}] for b, c in zip(base, picks)], max_tokens
        )
        revisions = lm.chat(
            [
                b
                + [
                    {"role": "user", "content": c.critique},
                    {"role": "assistant", "content": k},
                    {"role": "user", "content": c.revision + " Reply with the rewritten reply only."},
                ]
                for b, c, k in zip(base, picks, critiques)
            ],
            max_tokens,
        )
        for chain, c, k, r in zip(chains, picks, critiques, revisions):
            chain["steps"].append({"principle": c.name, "critique": k, "revision": r})
        current = [r if r.strip() else y for r, y in zip(revisions, current)]
    for chain, y in zip(chains, current):
        chain["final"] = y
    return chains


def before_after(
    start: str, trained: str, prompts: list[Any], cfg: Any, judge=None, scorer=None
) -> dict[str, Any]:
    """Sample each held-out prompt `cfg.eval_samples` times from both models (same seed); the gold
    score of each, their paired change, the judge's win rate of after over before, PM scores.
    The report shows each prompt's first pair."""
    from prefloop.eval.metrics import mean_and_stderr
    from prefloop.rewards.gold import SentimentGold
    from prefloop.teachers.lm import LocalChatModel

    if cfg.eval_samples < 1:
        raise ValueError(f"eval_samples must be at least 1, got {cfg.eval_samples}")
    shown = prompts
    prompts = [p for p in shown for _ in range(cfg.eval_samples)]
    chats = [[{"role": "user", "content": str(p)}] for p in prompts]
    before = LocalChatModel(start, device=cfg.device).chat(
        chats, cfg.max_new_tokens, temperature=cfg.temperature, seed=cfg.seed + 1
    )
    after = LocalChatModel(trained, device=cfg.device).chat(
        chats, cfg.max_new_tokens, temperature=cfg.temperature, seed=cfg.seed + 1
    )
    gold = SentimentGold()
    g_before, g_after = gold(prompts, before), gold(prompts, after)
    out: dict[str, Any] = {
        "gold_before": mean_and_stderr(g_before),
        "gold_after": mean_and_stderr(g_after),
        "gold_change": mean_and_stderr([a - b for a, b in zip(g_after, g_before)]),
        "num_samples": len(prompts),
        "samples": [
            {"prompt": p, "before": b, "after": a, "gold_before": gb, "gold_after": ga}
            for p, b, a, gb, ga in list(zip(prompts, before, after, g_before, g_after))[:: cfg.eval_samples]
        ],
    }
    if judge is not None:
        prefs = judge.compare_batch(list(zip(prompts, after, before)))
        out["judge_win_rate_after_vs_before"] = sum(
            1.0 if p.which == "a" else 0.5 if p.which == "tie" else 0.0 for p in prefs
        ) / len(prefs)
        out["judge_mean_p_after"] = sum(p.probability for p in prefs) / len(prefs)
        out["judge"] = judge.summary()
    if scorer is not None:
        out["pm_before"] = sum(scorer(prompts, before)) / len(prompts)
        out["pm_after"] = sum(scorer(prompts, after)) / len(prompts)
    return out


def _write_report(out: Path, title: str, report: dict[str, Any]) -> None:
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    ev = report["eval"]
    lines = [
        f"# {title}",
        "",
        f"| held-out red-team prompts ({len(ev['samples'])} × {ev['num_samples'] // len(ev['samples'])} replies) | before | after |",
        "|---|---:|---:|",
    ]
    lines.append(
        f"| gold (VADER sentiment), mean ± s.e. | {ev['gold_before'][0]:.3f} ± {ev['gold_before'][1]:.3f} | {ev['gold_after'][0]:.3f} ± {ev['gold_after'][1]:.3f} |"
    )
    lines.append(
        f"| gold change, paired, mean ± s.e. | | {ev['gold_change'][0]:+.3f} ± {ev['gold_change'][1]:.3f} |"
    )
    if "pm_before" in ev:
        lines.append(f"| preference-model score | {ev['pm_before']:.3f} | {ev['pm_after']:.3f} |")
    if "judge_win_rate_after_vs_before" in ev:
        lines.append(f"| AI judge win rate, after vs before | | {ev['judge_win_rate_after_vs_before']:.3f} |")
    lines += ["", "## Samples", ""]
    for s in ev["samples"]:
        lines += [
            f"**{s['prompt']}**",
            "",
            f"- before ({s['gold_before']:+.2f}): {s['before']}",
            f"- after ({s['gold_after']:+.2f}): {s['after']}",
            "",
        ]
    (out / "report.md").write_text("\n".join(lines))


def run_sl(cfg: ConstitutionalSLConfig) -> dict[str, Any]:
    from prefloop.config import save_yaml
    from prefloop.data.records import Demonstration
    from prefloop.generation.cli import read_prompts
    from prefloop.teachers.constitution import load_constitution
    from prefloop.teachers.lm import LocalChatModel
    from prefloop.train import sft

    if cfg.rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {cfg.rounds}")
    constitution = load_constitution(cfg.constitution)
    train_prompts, eval_prompts = _split(read_prompts(cfg.prompts), cfg.num_eval_prompts, cfg.seed)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, out / "config.yaml")
    started = time.perf_counter()
    lm = LocalChatModel(cfg.model, device=cfg.device)
    chats = [[{"role": "user", "content": str(p)}] for p in train_prompts]
    print(
        f"sampling {len(chats)} replies, then {cfg.rounds} critique-revision round(s) ...",
        file=sys.stderr,
        flush=True,
    )
    replies = lm.chat(chats, cfg.max_new_tokens, temperature=cfg.temperature, seed=cfg.seed)
    chains = critique_and_revise(
        lm, constitution, train_prompts, replies, cfg.rounds, random.Random(cfg.seed), cfg.max_new_tokens
    )
    with (out / "revisions.jsonl").open("w", encoding="utf-8") as f:
        for chain in chains:
            f.write(json.dumps(chain, ensure_ascii=False) + "\n")
    del lm
    sft_cfg = sft.SFTConfig(
        model=cfg.model,
        output_dir=str(out / "sft"),
        epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        lora=cfg.lora,
        batch_size=cfg.batch_size,
        max_length=256,
        max_prompt_length=128,
        seed=cfg.seed,
        device=cfg.device,
        save_steps=0,
        report_to_tensorboard="no",
    )
    final = sft.train(sft_cfg, records=[Demonstration(c["prompt"], c["final"]) for c in chains])
    judge = (
        _judge(cfg.judge, out, cfg.judge_cache, cfg.device, rubric=constitution.preamble)
        if cfg.judge
        else None
    )
    report = {
        "stage": "sl",
        "model": str(final),
        "train_prompts": len(train_prompts),
        "eval": before_after(cfg.model, str(final), eval_prompts, cfg, judge=judge),
        "seconds": time.perf_counter() - started,
        "config": asdict(cfg),
    }
    _write_report(out, f"Constitutional AI, supervised stage ({cfg.rounds} round(s))", report)
    return report


def label_pairs(
    judge, constitution, triples: list[tuple[Any, str, str]], k: int, rng: random.Random
) -> list[dict[str, Any]]:
    """Soft labels p = mean over k random principles of the judge's P(a ≻ b) under each."""
    if not 1 <= k <= len(constitution.principles):
        raise ValueError(f"principles_per_pair must be in 1..{len(constitution.principles)}, got {k}")
    picks = [rng.sample(range(len(constitution.principles)), k) for _ in triples]
    per_pair: list[list[float]] = [[] for _ in triples]
    for j, principle in enumerate(constitution.principles):
        which = [i for i, ps in enumerate(picks) if j in ps]
        if not which:
            continue
        prefs = judge.compare_batch(
            [triples[i] for i in which],
            rubric=constitution.preamble,
            question=CHOICE_TEMPLATE.format(question=principle.choice),
        )
        for i, pref in zip(which, prefs):
            per_pair[i].append(pref.probability)
    return [
        {
            "p": sum(ps) / len(ps),
            "principles": [constitution.principles[j].name for j in picks[i]],
            "per_principle": ps,
        }
        for i, ps in enumerate(per_pair)
    ]


def run_rl(cfg: ConstitutionalRLConfig) -> dict[str, Any]:
    from prefloop.config import save_yaml
    from prefloop.data.records import PreferencePair
    from prefloop.generation.cli import read_prompts
    from prefloop.rewards.model import RewardModelScorer
    from prefloop.teachers.constitution import load_constitution
    from prefloop.teachers.lm import LocalChatModel
    from prefloop.train import reward_model

    constitution = load_constitution(cfg.constitution)
    train_prompts, eval_prompts = _split(read_prompts(cfg.prompts), cfg.num_eval_prompts, cfg.seed)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, out / "config.yaml")
    started = time.perf_counter()
    lm = LocalChatModel(cfg.model, device=cfg.device)
    chats = [[{"role": "user", "content": str(p)}] for p in train_prompts]
    a = lm.chat(chats, cfg.max_new_tokens, temperature=cfg.temperature, seed=cfg.seed)
    b = lm.chat(chats, cfg.max_new_tokens, temperature=cfg.temperature, seed=cfg.seed + 1000)
    del lm
    judge = _judge(
        cfg.judge,
        out,
        cfg.judge_cache,
        cfg.device,
        reasoning=cfg.reasoning,
        clamp=(0.4, 0.6) if cfg.reasoning else None,
    )
    triples = list(zip(train_prompts, a, b))
    print(
        f"labelling {len(triples)} pairs under {cfg.principles_per_pair} principles each ...",
        file=sys.stderr,
        flush=True,
    )
    labels = label_pairs(judge, constitution, triples, cfg.principles_per_pair, random.Random(cfg.seed))
    records = []
    with (out / "labels.jsonl").open("w", encoding="utf-8") as f:
        for (p, x, y), lab in zip(triples, labels):
            f.write(json.dumps({"prompt": p, "a": x, "b": y, **lab}, ensure_ascii=False) + "\n")
            chosen, rejected, q = (x, y, lab["p"]) if lab["p"] >= 0.5 else (y, x, 1 - lab["p"])
            records.append(PreferencePair(p, chosen, rejected, meta={"p_chosen": q}))
    pm_path = reward_model.train(
        reward_model.RewardConfig(
            model=cfg.preference_model,
            output_dir=str(out / "preference_model"),
            epochs=cfg.pm_epochs,
            batch_size=4,
            learning_rate=1e-4,
            max_length=256,
            max_prompt_length=128,
            seed=cfg.seed,
            device=cfg.device,
            save_steps=0,
            report_to_tensorboard="no",
        ),
        records=records,
    )
    if cfg.policy_step == "ppo":
        from prefloop.data.records import Prompt
        from prefloop.train import online

        policy = online.train(
            online.PPOConfig(
                model=cfg.model,
                output_dir=str(out / "ppo"),
                max_steps=cfg.ppo_steps,
                prompts_per_step=min(8, len(train_prompts)),
                learning_rate=cfg.ppo_lr,
                lora=cfg.lora,
                max_new_tokens=cfg.max_new_tokens,
                seed=cfg.seed,
                device=cfg.device,
                save_steps=0,
                report_to_tensorboard="no",
            ),
            records=[Prompt(p) for p in train_prompts],
            reward=RewardModelScorer(pm_path, device=cfg.device),
            algorithm="ppo",
        )
    else:
        policy = _dpo(cfg, out, records)
    ps = [lab["p"] for lab in labels]
    report = {
        "stage": "rl",
        "model": str(policy),
        "preference_model": str(pm_path),
        "pairs": len(records),
        "label_p_mean_abs_from_half": sum(abs(p - 0.5) for p in ps) / len(ps),
        "judge_labelling": judge.summary(),
        "eval": before_after(
            cfg.model,
            str(policy),
            eval_prompts,
            cfg,
            judge=judge,
            scorer=RewardModelScorer(pm_path, device=cfg.device),
        ),
        "seconds": time.perf_counter() - started,
        "config": asdict(cfg),
    }
    _write_report(out, "Constitutional AI, RL stage (AI labels -> soft-label preference model, DPO)", report)
    return report


def _dpo(cfg: ConstitutionalRLConfig, out: Path, records: list) -> Path:
    from prefloop.data.records import PreferencePair
    from prefloop.train import preference

    return preference.train(
        preference.PreferenceConfig(
            model=cfg.model,
            output_dir=str(out / "dpo"),
            loss="dpo",
            beta=cfg.dpo_beta,
            learning_rate=cfg.dpo_lr,
            epochs=cfg.dpo_epochs,
            max_steps=cfg.dpo_max_steps,
            batch_size=4,
            lora=cfg.lora,
            max_length=256,
            max_prompt_length=128,
            seed=cfg.seed,
            device=cfg.device,
            save_steps=0,
            report_to_tensorboard="no",
        ),
        records=[PreferencePair(r.prompt, r.chosen, r.rejected) for r in records],
    )


STAGES: dict[str, tuple[type[Any], Callable[[Any], Any]]] = {
    "sl": (ConstitutionalSLConfig, run_sl),
    "rl": (ConstitutionalRLConfig, run_rl),
}


def main(argv: list[str], command: str = "constitutional") -> None:
    from prefloop.cli import fail
    from prefloop.config import ConfigError, parse_args
    from prefloop.data.validate import DataError
    from prefloop.models.load import ModelLoadError
    from prefloop.teachers.judge import JudgeError

    if not argv or argv[0] not in STAGES:
        print(f"usage: prefloop {command} sl|rl [--help] [flags]", file=sys.stderr)
        raise SystemExit(2)
    cls, fn = STAGES[argv[0]]
    cfg: Any = parse_args(cls, argv[1:], prog=f"prefloop {command} {argv[0]}", description=cls.__doc__)
    try:
        report = fn(cfg)
    except (ConfigError, DataError, ValueError, FileNotFoundError, ModelLoadError, JudgeError) as exc:
        fail(str(exc))
    print((Path(cfg.output_dir) / "report.md").read_text())
    print(f"done in {report['seconds']:.0f} s")
