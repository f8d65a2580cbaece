"""The 8×8 digits of scikit-learn as a tiny image task, and a gold judge over images.

Data: `sklearn.datasets.load_digits` — 1,797 grey-scale 8×8 images of handwritten digits 0–9
(UCI "Optical Recognition of Handwritten Digits"), pixel values 0..16, bundled inside the
scikit-learn wheel (nothing is downloaded). Here an image is a row of 64 floats in [−1, 1]
(x = v/8 − 1), row-major; `as_grid` turns rows back into [N, 8, 8].

Gold: a small classifier p(y | x) — a one-hidden-layer MLP (64 → hidden → 10) trained with
cross-entropy (AdamW, full batch, seeded) on the training split — and the gold score of an image

    g(x) = p(y = target | x)        in [0, 1]

the probability that it shows the target digit. Training never sees g, only a simulated
annotator's noisy pairwise labels over it (`prefloop.train.diffusion_dpo`).

Shapes: images [N, 64] float32; labels [N] int64; scores [N].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

NUM_PIXELS = 64
SIDE = 8
NUM_CLASSES = 10


def load_digit_images() -> tuple[torch.Tensor, torch.Tensor]:
    """(images [1797, 64] in [−1, 1], labels [1797]) from scikit-learn's bundled digits."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError(
            "the digits image task needs scikit-learn: pip install 'prefloop[image]' (or scikit-learn)"
        ) from None
    data = load_digits()
    images = torch.tensor(data.data, dtype=torch.float32) / 8.0 - 1.0
    labels = torch.tensor(data.target, dtype=torch.int64)
    return images, labels


def as_grid(images: torch.Tensor) -> torch.Tensor:
    """[N, 64] rows → [N, 8, 8] images."""
    return images.reshape(-1, SIDE, SIDE)


class DigitClassifier(nn.Module):
    """p(y | x) for 8×8 digits: 64 → hidden (ReLU) → 10 logits."""

    def __init__(self, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(NUM_PIXELS, hidden), nn.ReLU(), nn.Linear(hidden, NUM_CLASSES))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


def train_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    seed: int,
    steps: int = 300,
    hidden: int = 64,
    learning_rate: float = 1e-2,
    weight_decay: float = 1e-3,
) -> DigitClassifier:
    """Fit a `DigitClassifier` by full-batch AdamW on cross-entropy (seeded; about a second on a CPU)."""
    torch.manual_seed(seed)
    model = DigitClassifier(hidden)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return model


@torch.no_grad()
def accuracy(model: DigitClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of images whose most probable class is their label."""
    return (model(images).argmax(-1) == labels).float().mean().item()


@dataclass
class DigitGold:
    """The gold judge over images: g(x) = p(y = target | x) under a fixed classifier."""

    classifier: DigitClassifier
    target: int

    def __post_init__(self) -> None:
        if not 0 <= self.target < NUM_CLASSES:
            raise ValueError(f"target digit must be in 0..9, got {self.target}")

    @property
    def name(self) -> str:
        return f"p(digit = {self.target})"

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Gold scores [N] for images [N, 64]."""
        return self.classifier(images).softmax(-1)[:, self.target]

    @torch.no_grad()
    def is_target(self, images: torch.Tensor) -> torch.Tensor:
        """[N] bool: the classifier's most probable digit is the target."""
        return self.classifier(images).argmax(-1) == self.target
