"""Generation backends behind one protocol: `Generator.generate(prompts, num_responses, seed)`.

`HFGenerator` (transformers `generate`, CPU and single GPU) lives in `prefloop.generation.hf`;
`prefloop generate` is `prefloop.generation.cli`.
"""

from __future__ import annotations

__all__ = ["Completion", "Generator", "HFGenerator"]


def __getattr__(name: str):
    # Lazy, so importing the package does not import torch.
    if name in __all__:
        from prefloop.generation import hf

        return getattr(hf, name)
    raise AttributeError(f"module 'prefloop.generation' has no attribute {name!r}")
