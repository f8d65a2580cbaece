"""The reference policy π_ref that KL-regularized objectives (DPO, KTO, PPO's KL penalty) measure against.

Three sources, chosen by what the run already holds:
- a separate model (`path`), loaded once and frozen;
- the policy's adapter-disabled base, when the policy is a LoRA (PEFT) model: no second copy;
- a frozen copy of the policy taken now (`copy_policy=True`), for full fine-tuning with a live
  reference. Without it the policy itself is used, which is right only before its first update
  (e.g. when every reference log-prob is precomputed before training).

Every evaluation runs under `torch.no_grad()` in eval mode (no dropout) and gives the model
back in the mode it was in.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch

from prefloop.models.logps import response_logps, response_token_logps

T = TypeVar("T")


class Reference:
    """Frozen reference policy; `apply(fn)` runs `fn(model)` on it."""

    def __init__(
        self,
        policy: torch.nn.Module,
        *,
        path: str | None = None,
        lora: bool = False,
        copy_policy: bool = False,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ):
        self.policy = policy
        self.lora = lora
        self.frozen: torch.nn.Module | None = None
        if path:
            from prefloop.models.load import load_causal_lm

            self.frozen = load_causal_lm(path, dtype=dtype).to(device)
        elif copy_policy and not lora:
            self.frozen = copy.deepcopy(policy)
        if self.frozen is not None:
            self.frozen.eval().requires_grad_(False)

    @contextlib.contextmanager
    def _model(self) -> Iterator[torch.nn.Module]:
        model = self.frozen if self.frozen is not None else self.policy
        was_training = model.training
        model.eval()
        context: contextlib.AbstractContextManager = contextlib.nullcontext()
        if self.frozen is None and self.lora:
            from prefloop.models.load import disabled_adapter

            context = disabled_adapter(self.policy)
        try:
            with context, torch.no_grad():
                yield model
        finally:
            model.train(was_training)

    def apply(self, fn: Callable[[torch.nn.Module], T]) -> T:
        """`fn(reference model)` under no_grad, in eval mode, with adapters disabled where needed."""
        with self._model() as model:
            return fn(model)

    def response_logps(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        response_mask: torch.Tensor,
        average: bool = False,
    ) -> torch.Tensor:
        """Sequence log-probs [B] of the responses under π_ref (see `models.logps.response_logps`)."""
        return self.apply(
            lambda m: response_logps(m, input_ids, attention_mask, response_mask, average=average)[0]
        )

    def response_token_logps(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_mask: torch.Tensor
    ) -> torch.Tensor:
        """Per-token log-probs [B, T] of the responses under π_ref, 0 off the response."""
        out = self.apply(lambda m: response_token_logps(m, input_ids, attention_mask, response_mask))
        assert isinstance(out, torch.Tensor)
        return out
