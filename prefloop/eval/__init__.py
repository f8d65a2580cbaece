"""Evaluation: gold score, KL to a reference, win rate (`metrics`), figures (`plots`), reports (`report`)."""

from prefloop.eval.metrics import gold_score, kl_to_reference, mean_and_stderr, sequence_logprobs, win_rate

__all__ = ["gold_score", "kl_to_reference", "mean_and_stderr", "sequence_logprobs", "win_rate"]
