"""Toy rewards for the online-RL tests (loaded through --reward FILE.py:FUNCTION)."""


def frac_e(prompts, completions):
    """Share of the letter 'e' in the completion: varies between random samples."""
    return [c.count("e") / max(len(c), 1) for c in completions]


def starts_yes(prompts, completions):
    """1 when the completion starts with 'Yes', else 0 (the learning test's target)."""
    return [1.0 if c.startswith("Yes") else 0.0 for c in completions]


def nan_reward(prompts, completions):
    return [float("nan")] * len(completions)


def too_few(prompts, completions):
    return [0.0] * (len(completions) - 1)


def raises(prompts, completions):
    raise RuntimeError("judge offline")


class Rising:
    """A proxy that rises by 0.1 every call (every rollout step), whatever the samples."""

    def __init__(self):
        self.calls = 0

    def __call__(self, prompts, completions):
        self.calls += 1
        return [0.1 * self.calls] * len(completions)


class Falling(Rising):
    """A watch that falls by 0.1 every call."""

    def __call__(self, prompts, completions):
        return [-x for x in super().__call__(prompts, completions)]
