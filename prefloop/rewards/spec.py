"""`--reward SPEC`: turn a reward specification into a `RewardFn`.

String forms (see ``ACCEPTED_FORMS``; docs/rewards.md has examples):

    rm:DIR                 a reward model from `prefloop reward` (DIR = its OUTPUT/final, or OUTPUT)
    DIR                    the same, when DIR is an existing directory
    gold:NAME              a built-in gold judge: positive_replies (the demo task; alias sentiment)
    MODULE:FUNCTION        a Python callable f(prompts, completions) -> list[float]; a class is
                           instantiated without arguments first; MODULE may be a path to a .py file
    W*SPEC,W*SPEC,...      a weighted sum of the forms above (weight 1 when omitted)
    FILE.yaml / FILE.yml   anything, including ensembles and Llama 2 safety gating (below)

YAML form: a node is a string spec, or a mapping with exactly one of

    reward: SPEC           (+ optional `args: {...}`: keyword arguments for a gold judge or a
                           callable, which is then called with them to build the reward)
    sum: [NODE, ...]       weighted sum; each term may carry `weight: W` (default 1)
    ensemble: [NODE, ...]  + `combine: mean | lcb | ucb` (default mean) and `k: K` (default 1)
    gate: {safety: NODE, helpfulness: NODE, threshold: T, unsafe_field: NAME}

plus an optional `weight` when it is a term of a sum. A top-level list is a sum. Reward models
named twice (an ensemble member reused in a gate, say) are loaded once.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefloop.rewards.base import RewardError
from prefloop.rewards.combine import (
    ENSEMBLE_COMBINES,
    LLAMA2_SAFETY_THRESHOLD,
    EnsembleReward,
    NamedReward,
    SafetyGatedReward,
    WeightedSum,
)

__all__ = ["ACCEPTED_FORMS", "GOLD_REWARDS", "RewardSpecError", "load_reward", "reward_model_dir"]

ACCEPTED_FORMS = (
    "accepted --reward forms: rm:DIR (a `prefloop reward` output: DIR or DIR/final); "
    "an existing reward-model directory; gold:NAME (gold judges: {gold}); "
    "MODULE:FUNCTION or FILE.py:FUNCTION (a callable f(prompts, completions) -> list[float]); "
    "W*SPEC,W*SPEC,... (a weighted sum); FILE.yaml (sums, ensembles mean/lcb/ucb, safety gating)"
)

# gold:NAME -> (the judge in prefloop.rewards.gold, its default arguments)
GOLD_REWARDS: dict[str, tuple[str, dict[str, Any]]] = {
    "positive_replies": ("sentiment", {}),
    "sentiment": ("sentiment", {}),
}

_WEIGHTED = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*\*\s*(.+?)\s*$")
_CALLABLE = re.compile(r"^(?P<module>[^:]+):(?P<attr>[A-Za-z_][A-Za-z0-9_.]*)$")
_NODE_KEYS = {"reward", "sum", "ensemble", "gate"}


class RewardSpecError(RewardError):
    """A --reward specification that cannot be turned into a reward (the message says why)."""


def _accepted() -> str:
    return ACCEPTED_FORMS.format(gold=", ".join(sorted(GOLD_REWARDS)))


def load_reward(spec: str | Path | Mapping | list, *, device: str = "auto", batch_size: int = 16) -> Any:
    """The `RewardFn` a ``--reward`` value describes (string form, YAML file, or parsed YAML).

    Reward models run on ``device`` in batches of ``batch_size``. Errors are `RewardSpecError`
    (a ValueError) with a one-line message naming the spec, the file and field, or the directory.
    """
    builder = _Builder(device=device, batch_size=batch_size)
    if isinstance(spec, (Mapping, list)):
        return builder.node(spec, "reward")
    text = str(spec).strip()
    if not text:
        raise RewardSpecError(f"empty --reward; {_accepted()}")
    if text.lower().endswith((".yaml", ".yml")) and "," not in text:
        return builder.yaml_file(Path(text))
    return builder.string(text)


def reward_model_dir(path: str | Path) -> Path:
    """The model directory of a `prefloop reward` output (OUTPUT/final, or the directory itself).

    Raises `RewardSpecError` naming the directory when it is missing, is not a Hugging Face model
    directory, or holds a model that is not a sequence classifier (not a reward model).
    """
    import json

    given = Path(path).expanduser()
    if not given.is_dir():
        raise RewardSpecError(f"reward model directory {str(given)!r} does not exist")
    folder = given / "final" if (given / "final" / "config.json").is_file() else given
    config = folder / "config.json"
    if not config.is_file():
        raise RewardSpecError(
            f"reward model directory {str(given)!r}: no config.json (pass the OUTPUT or OUTPUT/final of "
            "`prefloop reward`)"
        )
    try:
        architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError) as exc:
        raise RewardSpecError(
            f"reward model directory {str(folder)!r}: unreadable config.json: {exc}"
        ) from None
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise RewardSpecError(
            f"reward model directory {str(folder)!r} holds {architectures or 'an unknown architecture'}, not a "
            "reward model (a *ForSequenceClassification); train one with `prefloop reward`"
        )
    return folder


class _Builder:
    def __init__(self, device: str, batch_size: int):
        self.device, self.batch_size = device, batch_size
        self._models: dict[Path, Any] = {}

    # ----------------------------------------------------------------- strings

    def string(self, text: str) -> Any:
        terms = [t.strip() for t in text.split(",")]
        if len(terms) == 1 and not _WEIGHTED.match(terms[0]):
            return self.atom(terms[0])
        parsed = []
        for term in terms:
            if not term:
                raise RewardSpecError(f"--reward {text!r}: empty term; {_accepted()}")
            m = _WEIGHTED.match(term)
            weight, atom = (float(m.group(1)), m.group(2)) if m else (1.0, term)
            parsed.append((weight, self.atom(atom)))
        return WeightedSum(parsed)

    def atom(self, spec: str, args: Mapping[str, Any] | None = None) -> Any:
        if spec.lower().endswith((".yaml", ".yml")):
            return self.yaml_file(Path(spec))
        if spec.startswith("rm:"):
            return self.reward_model(spec[3:], spec)
        if spec.startswith("gold:"):
            return self.gold(spec[5:], spec, args)
        if Path(spec).expanduser().is_dir():
            return self.reward_model(spec, f"rm:{spec}")
        m = _CALLABLE.match(spec)
        if m:
            return self.callable(m.group("module"), m.group("attr"), spec, args)
        if ("/" in spec or "\\" in spec) and ":" not in spec:
            raise RewardSpecError(f"reward model directory {spec!r} does not exist; {_accepted()}")
        raise RewardSpecError(f"unknown --reward {spec!r}; {_accepted()}")

    def reward_model(self, path: str, name: str) -> Any:
        if not path:
            raise RewardSpecError(f"--reward {name!r}: give a directory after 'rm:'")
        folder = reward_model_dir(path).resolve()
        if folder not in self._models:
            from prefloop.rewards.model import RewardModelScorer

            self._models[folder] = RewardModelScorer(
                folder, batch_size=self.batch_size, device=self.device, name=name
            )
        return self._models[folder]

    def gold(self, which: str, name: str, args: Mapping[str, Any] | None) -> Any:
        from prefloop.rewards.gold import gold_judge

        if which not in GOLD_REWARDS:
            raise RewardSpecError(f"unknown gold judge {name!r}; known: {', '.join(sorted(GOLD_REWARDS))}")
        judge, defaults = GOLD_REWARDS[which]
        try:
            fn = gold_judge(judge, **{**defaults, **dict(args or {})})
        except TypeError as exc:
            raise RewardSpecError(f"--reward {name!r}: bad args: {exc}") from None
        return NamedReward(fn, name)

    def callable(self, module: str, attr: str, name: str, args: Mapping[str, Any] | None) -> Any:
        mod = _import(module, name)
        target: Any = mod
        for part in attr.split("."):
            if not hasattr(target, part):
                raise RewardSpecError(f"--reward {name!r}: module {module!r} has no attribute {attr!r}")
            target = getattr(target, part)
        try:
            if args is not None:
                target = target(**dict(args))
            elif isinstance(target, type):
                target = target()
        except Exception as exc:
            raise RewardSpecError(
                f"--reward {name!r}: building it failed: {type(exc).__name__}: {exc}"
            ) from None
        if not callable(target):
            raise RewardSpecError(f"--reward {name!r}: {attr!r} is a {type(target).__name__}, not callable")
        return NamedReward(target, name)

    # ----------------------------------------------------------------- YAML

    def yaml_file(self, path: Path) -> Any:
        import yaml

        if not path.is_file():
            raise RewardSpecError(f"reward file {str(path)!r} does not exist")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise RewardSpecError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
        if data is None:
            raise RewardSpecError(f"{path}: empty reward file")
        return self.node(data, str(path))

    def node(self, data: Any, where: str) -> Any:
        if isinstance(data, str):
            return self.string(data)
        if isinstance(data, list):
            return self._sum(data, where)
        if not isinstance(data, Mapping):
            raise RewardSpecError(
                f"{where}: expected a spec string, a list or a mapping, got {type(data).__name__}"
            )
        kinds = _NODE_KEYS & set(data)
        if len(kinds) != 1:
            raise RewardSpecError(
                f"{where}: needs exactly one of {sorted(_NODE_KEYS)}, got keys {sorted(map(str, data))}"
            )
        (kind,) = kinds
        allowed = {
            "reward": {"reward", "args", "weight"},
            "sum": {"sum", "weight"},
            "ensemble": {"ensemble", "combine", "k", "weight"},
            "gate": {"gate", "weight"},
        }[kind]
        unknown = sorted(set(map(str, data)) - allowed)
        if unknown:
            raise RewardSpecError(f"{where}: unknown key {unknown[0]!r}; expected {sorted(allowed)}")
        if kind == "reward":
            spec = data["reward"]
            if not isinstance(spec, str):
                raise RewardSpecError(f"{where}.reward: expected a spec string, got {type(spec).__name__}")
            args = data.get("args")
            if args is not None and not isinstance(args, Mapping):
                raise RewardSpecError(f"{where}.args: expected a mapping of keyword arguments")
            return self.atom(spec, args) if args is not None else self.string(spec)
        if kind == "sum":
            return self._sum(_list(data["sum"], f"{where}.sum"), f"{where}.sum")
        if kind == "ensemble":
            members = [
                self.node(m, f"{where}.ensemble[{i}]")
                for i, m in enumerate(_list(data["ensemble"], f"{where}.ensemble"))
            ]
            combine = data.get("combine", "mean")
            if combine not in ENSEMBLE_COMBINES:
                raise RewardSpecError(
                    f"{where}.combine: expected one of {ENSEMBLE_COMBINES}, got {combine!r}"
                )
            k = _number(data.get("k", 1.0), f"{where}.k")
            try:
                return EnsembleReward(members, combine=combine, k=k)
            except ValueError as exc:
                raise RewardSpecError(f"{where}: {exc}") from None
        gate = data["gate"]
        if not isinstance(gate, Mapping):
            raise RewardSpecError(f"{where}.gate: expected a mapping with safety and helpfulness")
        allowed_gate = {"safety", "helpfulness", "threshold", "unsafe_field"}
        unknown = sorted(set(map(str, gate)) - allowed_gate)
        if unknown:
            raise RewardSpecError(
                f"{where}.gate: unknown key {unknown[0]!r}; expected {sorted(allowed_gate)}"
            )
        for required in ("safety", "helpfulness"):
            if required not in gate:
                raise RewardSpecError(f"{where}.gate.{required}: missing")
        return SafetyGatedReward(
            self.node(gate["safety"], f"{where}.gate.safety"),
            self.node(gate["helpfulness"], f"{where}.gate.helpfulness"),
            threshold=_number(gate.get("threshold", LLAMA2_SAFETY_THRESHOLD), f"{where}.gate.threshold"),
            unsafe_field=str(gate.get("unsafe_field", "unsafe")),
        )

    def _sum(self, items: list, where: str) -> Any:
        if not items:
            raise RewardSpecError(f"{where}: empty list of rewards")
        terms = []
        for i, item in enumerate(items):
            at = f"{where}[{i}]"
            weight = _number(item.get("weight", 1.0), f"{at}.weight") if isinstance(item, Mapping) else 1.0
            terms.append((weight, self.node(item, at)))
        if len(terms) == 1 and terms[0][0] == 1.0:
            return terms[0][1]
        return WeightedSum(terms)


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise RewardSpecError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RewardSpecError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _import(module: str, name: str):
    if module.endswith(".py"):
        path = Path(module).expanduser()
        if not path.is_file():
            raise RewardSpecError(f"--reward {name!r}: file {module!r} does not exist")
        mod_name = f"prefloop_reward_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise RewardSpecError(f"--reward {name!r}: {module!r} cannot be imported as a Python file")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = mod
        try:
            spec.loader.exec_module(mod)
        except Exception as exc:
            del sys.modules[mod_name]
            raise RewardSpecError(
                f"--reward {name!r}: importing {module!r} failed: {type(exc).__name__}: {exc}"
            ) from None
        return mod
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise RewardSpecError(
            f"--reward {name!r}: cannot import module {module!r} ({exc}); {_accepted()}"
        ) from None
    except Exception as exc:
        raise RewardSpecError(
            f"--reward {name!r}: importing {module!r} failed: {type(exc).__name__}: {exc}"
        ) from None
