"""prefloop: the whole RLHF loop — feedback, preference data, reward models and policy optimization."""

__version__ = "0.1.0"
