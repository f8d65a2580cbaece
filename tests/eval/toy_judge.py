"""A judge whose answer is known: the share of words of a reply that are the target word."""

TARGET = "yes"


def target_share(prompts, completions):
    out = []
    for text in completions:
        words = text.lower().split()
        out.append(sum(w.strip(".,!?") == TARGET for w in words) / max(len(words), 1))
    return out


def short(prompts, completions):
    """A second, different judge: shorter replies score higher."""
    return [-len(text) / 10 for text in completions]
