"""A constitution: principles to critique, revise and judge replies by (Bai et al. 2022).

File format (YAML):

    preamble: <text>            optional: the judge's system prompt in RL-from-AI-feedback
    principles:                 a list of mappings, each with
      - name: kindness          a short id (unique)
        critique: <text>        the critique request (supervised stage)
        revision: <text>        the revision request (supervised stage)
        choice: <text>          the comparison question answered with (A) or (B) (RL stage)

A bad entry stops with one line naming the file, the line and the field:
`constitution.yaml:14: principle 3 ('honesty'): field 'revision': missing`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

FIELDS = ("name", "critique", "revision", "choice")
DEFAULT_PREAMBLE = (
    "You are reviewing replies written by an AI assistant. Judge them by the principle you are given."
)


class ConstitutionError(ValueError):
    """A constitution file that cannot be used (message: file:line: what and which field)."""


@dataclass(frozen=True)
class Principle:
    name: str
    critique: str
    revision: str
    choice: str
    line: int = 0


@dataclass(frozen=True)
class Constitution:
    principles: tuple[Principle, ...]
    preamble: str = DEFAULT_PREAMBLE
    path: str = ""


def load_constitution(path: str | Path) -> Constitution:
    """Read and check a constitution file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ConstitutionError(f"{path}: constitution file not found")
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConstitutionError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(root, yaml.MappingNode):
        raise ConstitutionError(f"{path}:1: expected a mapping with 'principles' (and optionally 'preamble')")
    top = {k.value: v for k, v in root.value}
    unknown = sorted(set(top) - {"preamble", "principles"})
    if unknown:
        node = next(k for k, _ in root.value if k.value == unknown[0])
        raise ConstitutionError(
            f"{path}:{node.start_mark.line + 1}: unknown key {unknown[0]!r} (known: preamble, principles)"
        )
    preamble = DEFAULT_PREAMBLE
    if "preamble" in top:
        node = top["preamble"]
        if not isinstance(node, yaml.ScalarNode) or not node.value.strip():
            raise ConstitutionError(
                f"{path}:{node.start_mark.line + 1}: field 'preamble': expected non-empty text"
            )
        preamble = node.value.strip()
    plist = top.get("principles")
    if not isinstance(plist, yaml.SequenceNode) or not plist.value:
        line = plist.start_mark.line + 1 if plist is not None else 1
        raise ConstitutionError(f"{path}:{line}: field 'principles': expected a non-empty list")
    principles: list[Principle] = []
    seen: dict[str, int] = {}
    for n, entry in enumerate(plist.value, start=1):
        line = entry.start_mark.line + 1
        if not isinstance(entry, yaml.MappingNode):
            raise ConstitutionError(
                f"{path}:{line}: principle {n}: expected a mapping with fields {list(FIELDS)}"
            )
        fields = {k.value: v for k, v in entry.value}
        label = f"principle {n}" + (
            f" ({fields['name'].value!r})" if isinstance(fields.get("name"), yaml.ScalarNode) else ""
        )
        for key in fields:
            if key not in FIELDS:
                kline = next(k for k, _ in entry.value if k.value == key).start_mark.line + 1
                raise ConstitutionError(
                    f"{path}:{kline}: {label}: unknown field {key!r} (known: {', '.join(FIELDS)})"
                )
        values = {}
        for key in FIELDS:
            node = fields.get(key)
            if node is None:
                raise ConstitutionError(f"{path}:{line}: {label}: field '{key}': missing")
            if not isinstance(node, yaml.ScalarNode) or not str(node.value).strip():
                raise ConstitutionError(
                    f"{path}:{node.start_mark.line + 1}: {label}: field '{key}': expected non-empty text"
                )
            values[key] = str(node.value).strip()
        if values["name"] in seen:
            raise ConstitutionError(
                f"{path}:{line}: {label}: field 'name': {values['name']!r} already used on line {seen[values['name']]}"
            )
        seen[values["name"]] = line
        principles.append(Principle(line=line, **values))
    return Constitution(tuple(principles), preamble, str(path))
