"""Constitutional AI: the constitution file's errors, the principle ensemble, and both stages on tiny models."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file

from prefloop.constitutional import (
    ConstitutionalRLConfig,
    ConstitutionalSLConfig,
    label_pairs,
    run_rl,
    run_sl,
)
from prefloop.teachers.base import Preference
from prefloop.teachers.constitution import ConstitutionError, load_constitution

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "constitutional" / "constitution.yaml"
GOOD = """preamble: Judge by the principle.
principles:
  - name: kind
    critique: Is it unkind?
    revision: Make it kind.
    choice: Which is kinder?
  - name: safe
    critique: Is it unsafe?
    revision: Make it safe.
    choice: Which is safer?
"""


def test_the_example_constitution_and_prompts_load():
    c = load_constitution(EXAMPLE)
    assert len(c.principles) == 16 and len({p.name for p in c.principles}) == 16
    assert c.preamble.startswith("You are reviewing")
    lines = (REPO / "examples" / "constitutional" / "red_team.jsonl").read_text().splitlines()
    assert len(lines) == 24 and all("prompt" in json.loads(line) for line in lines)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda s: s.replace("    revision: Make it safe.\n", ""),
            r"c.yaml:7: principle 2 \('safe'\): field 'revision': missing",
        ),
        (
            lambda s: s.replace("choice: Which is kinder?", "choice: ''"),
            r"c.yaml:6: principle 1 \('kind'\): field 'choice': expected non-empty text",
        ),
        (
            lambda s: s.replace("name: safe", "name: kind"),
            r"c.yaml:7: principle 2 \('kind'\): field 'name': 'kind' already used on line 3",
        ),
        (
            lambda s: s.replace("    choice: Which is safer?", "    choice: Which is safer?\n    weight: 2"),
            r"c.yaml:11: principle 2 \('safe'\): unknown field 'weight'",
        ),
        (lambda s: s.replace("principles:", "principle:"), r"c.yaml:2: unknown key 'principle'"),
        (lambda s: s + "  - [oops\n", r"c.yaml:\d+: not valid YAML"),
        (
            lambda s: "preamble: x\nprinciples: []\n",
            r"c.yaml:2: field 'principles': expected a non-empty list",
        ),
    ],
)
def test_bad_constitution_names_file_line_and_field(tmp_path, edit, message):
    path = tmp_path / "c.yaml"
    path.write_text(edit(GOOD))
    with pytest.raises(ConstitutionError, match=message):
        load_constitution(path)


class FixedJudge:
    """A teacher whose P(a ≻ b) depends only on the principle's question (to check the averaging)."""

    name = "fixed"

    def __init__(self, by_word):
        self.by_word = by_word

    def compare_batch(self, triples, rubric=None, question=None):
        p = next(v for w, v in self.by_word.items() if w in question)
        return [Preference("a" if p > 0.5 else "b", p, abs(2 * p - 1)) for _ in triples]


def test_labels_are_averaged_over_the_sampled_principles(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(GOOD)
    c = load_constitution(path)
    labels = label_pairs(
        FixedJudge({"kinder": 0.9, "safer": 0.4}), c, [("x", "a", "b")] * 3, 2, random.Random(0)
    )
    # both principles for every pair: (0.9 + 0.4) / 2 = 0.65
    assert all(
        lab["p"] == pytest.approx(0.65) and sorted(lab["principles"]) == ["kind", "safe"] for lab in labels
    )
    one = label_pairs(
        FixedJudge({"kinder": 0.9, "safer": 0.4}), c, [("x", "a", "b")] * 20, 1, random.Random(1)
    )
    assert {round(lab["p"], 6) for lab in one} == {0.9, 0.4}
    with pytest.raises(ValueError, match="principles_per_pair"):
        label_pairs(FixedJudge({}), c, [("x", "a", "b")], 3, random.Random(0))


def _prompts(tmp_path) -> str:
    path = tmp_path / "red.jsonl"
    src = (REPO / "examples" / "constitutional" / "red_team.jsonl").read_text().splitlines()[:5]
    path.write_text("\n".join(src) + "\n")
    return str(path)


def _changed(final_dir: Path) -> bool:
    from prefloop.models.tiny import tiny_model_dir

    before = load_file(str(tiny_model_dir("causal") / "model.safetensors"))
    after = load_file(str(final_dir / "model.safetensors"))
    return any(not (before[k] == after[k]).all() for k in before if k in after)


@pytest.mark.slow  # ~40 s on the shared 2-core machine
def test_sl_stage_on_tiny(tmp_path):
    cfg = ConstitutionalSLConfig(
        model="tiny",
        constitution=str(EXAMPLE),
        prompts=_prompts(tmp_path),
        output_dir=str(tmp_path / "sl"),
        num_eval_prompts=1,
        max_new_tokens=6,
        rounds=2,
        judge="tiny",
        max_steps=2,
        learning_rate=1e-2,
    )
    report = run_sl(cfg)
    chains = [json.loads(line) for line in (tmp_path / "sl" / "revisions.jsonl").read_text().splitlines()]
    assert len(chains) == 4 and all(len(c["steps"]) == 2 for c in chains)
    assert {s["principle"] for c in chains for s in c["steps"]} <= {
        p.name for p in load_constitution(EXAMPLE).principles
    }
    assert _changed(Path(report["model"]))
    ev = report["eval"]
    assert 0 <= ev["judge_win_rate_after_vs_before"] <= 1
    # 1 held-out prompt x eval_samples (4) replies per model, paired; the report shows the first pair
    assert ev["num_samples"] == 4 and len(ev["samples"]) == 1
    assert ev["gold_change"][0] == pytest.approx(ev["gold_after"][0] - ev["gold_before"][0])
    assert (tmp_path / "sl" / "judge_cache.sqlite").is_file()  # the default cache lives in OUTPUT
    assert (tmp_path / "sl" / "report.md").read_text().startswith("# Constitutional AI, supervised stage")
    shutil.rmtree(tmp_path / "sl" / "sft", ignore_errors=True)


@pytest.mark.slow  # ~45 s: sampling, AI labels, preference model and DPO
def test_rl_stage_on_tiny(tmp_path):
    cfg = ConstitutionalRLConfig(
        model="tiny",
        constitution=str(EXAMPLE),
        prompts=_prompts(tmp_path),
        output_dir=str(tmp_path / "rl"),
        judge="tiny",
        judge_cache=str(tmp_path / "c.sqlite"),
        principles_per_pair=3,
        num_eval_prompts=1,
        max_new_tokens=6,
        preference_model="tiny-reward",
        pm_epochs=1,
        dpo_max_steps=2,
        dpo_lr=1e-2,
    )
    report = run_rl(cfg)
    labels = [json.loads(line) for line in (tmp_path / "rl" / "labels.jsonl").read_text().splitlines()]
    assert len(labels) == 4 and all(0 < lab["p"] < 1 and len(lab["per_principle"]) == 3 for lab in labels)
    for lab in labels:
        assert lab["p"] == pytest.approx(sum(lab["per_principle"]) / 3)
    assert _changed(Path(report["model"]))
    assert "pm_after" in report["eval"] and report["judge_labelling"]["pairs"] == 4 * 3


@pytest.mark.slow  # ~1 min: labels, preference model, then PPO against it
def test_rl_stage_with_ppo_against_the_preference_model(tmp_path):
    cfg = ConstitutionalRLConfig(
        model="tiny",
        constitution=str(EXAMPLE),
        prompts=_prompts(tmp_path),
        output_dir=str(tmp_path / "rl"),
        judge="tiny",
        judge_cache=str(tmp_path / "c.sqlite"),
        principles_per_pair=2,
        num_eval_prompts=1,
        max_new_tokens=6,
        preference_model="tiny-reward",
        pm_epochs=1,
        policy_step="ppo",
        ppo_steps=2,
        ppo_lr=1e-2,
    )
    report = run_rl(cfg)
    assert "/ppo/" in report["model"] and _changed(Path(report["model"]))
