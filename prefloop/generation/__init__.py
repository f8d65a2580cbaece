"""Generation backends behind one protocol (`prefloop.generation.base`).

`Completion`, `Generator` and `group_by_prompt` are torch-free (`prefloop.generation.base`);
`HFGenerator` (transformers `generate`, CPU and single GPU) lives in `prefloop.generation.hf`;
`prefloop generate` is `prefloop.generation.cli`.
"""

from __future__ import annotations

from prefloop.generation.base import FINISH_REASONS, Completion, Generator, group_by_prompt

__all__ = ["FINISH_REASONS", "Completion", "Generator", "HFGenerator", "group_by_prompt"]


def __getattr__(name: str):
    # Lazy, so importing the package does not import torch.
    if name == "HFGenerator":
        from prefloop.generation import hf

        return hf.HFGenerator
    raise AttributeError(f"module 'prefloop.generation' has no attribute {name!r}")
