"""A tiny denoising diffusion probabilistic model (DDPM) in plain torch.

Provenance and formulas
-----------------------
Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models"; the cosine schedule of
Nichol & Dhariwal 2021, "Improved DDPM" (eq. 17). Timesteps are t = 0..T−1 (t = 0 is the first
noising step; the paper's t = 1..T).

    ᾱ(s)   = cos²(((s/T + 0.008) / 1.008) · π/2) / cos²((0.008 / 1.008) · π/2)
    β_t    = min(1 − ᾱ(t+1)/ᾱ(t), 0.999),  α_t = 1 − β_t,  ᾱ_t = Π_{s ≤ t} α_s
    forward  x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε,   ε ~ N(0, I)
    loss     "simple" ε-prediction: e(x₀, t, ε) = mean over pixels of (ε − ε_θ(x_t, t))²
    sampling (ancestral, "clip denoised"): x̂₀ = clamp((x_t − √(1−ᾱ_t) ε_θ) / √ᾱ_t, −1, 1),
             x_{t−1} = μ̃_t(x̂₀, x_t) + σ_t z with the posterior q(x_{t−1} | x_t, x₀):
             μ̃_t = √ᾱ_{t−1} β_t / (1 − ᾱ_t) · x̂₀ + √α_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · x_t,
             σ_t² = β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t;   no noise at t = 0.

The noise predictor ε_θ(x_t, t) is an MLP (images are only 64 pixels; a U-Net buys nothing
here): the pixels and a sinusoidal embedding of t (Vaswani et al. 2017, as in DDPM) go in,
residual blocks (LayerNorm → SiLU → Linear) with the timestep embedding added, ε out.

Shapes: images x₀, x_t, ε: [B, P] (P = 64 pixels, rows in [−1, 1]); t: [B] int64; errors [B].

Deviations / choices
--------------------
- The error is a mean over pixels, not the sum ‖·‖² (so losses and β do not scale with P).
- Sampling is seeded by a `torch.Generator`: the same seed gives the same initial noise and the
  same z at every step, so two models sampled with one seed are compared image by image.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class NoiseSchedule:
    """The cosine schedule's tensors for T steps (index t = 0..T−1)."""

    betas: torch.Tensor
    alphas: torch.Tensor
    alpha_bars: torch.Tensor

    @property
    def num_timesteps(self) -> int:
        return int(self.betas.shape[0])


def cosine_schedule(num_timesteps: int, offset: float = 0.008) -> NoiseSchedule:
    """Nichol & Dhariwal's cosine schedule for `num_timesteps` steps."""
    if num_timesteps < 1:
        raise ValueError(f"num_timesteps must be >= 1, got {num_timesteps}")
    s = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    f = torch.cos((s + offset) / (1 + offset) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    betas = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    alphas = 1 - betas
    return NoiseSchedule(betas.float(), alphas.float(), torch.cumprod(alphas, 0).float())


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding [B, dim] of integer timesteps [B] (dim even)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class NoisePredictor(nn.Module):
    """ε_θ(x_t, t): an MLP with residual blocks and an additive timestep embedding."""

    def __init__(self, num_pixels: int = 64, hidden: int = 256, depth: int = 3, time_dim: int = 64):
        super().__init__()
        self.time_dim = time_dim
        self.time = nn.Sequential(nn.Linear(time_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.inp = nn.Linear(num_pixels, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, hidden)) for _ in range(depth)
        )
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, num_pixels))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time(timestep_embedding(t, self.time_dim))
        h = self.inp(x) + emb
        for block in self.blocks:
            h = h + block(h + emb)
        return self.out(h)


def noisy(schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε."""
    a = schedule.alpha_bars[t][:, None]
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def denoising_errors(
    model: nn.Module, schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """Per-image denoising error mean_pixels (ε − ε_θ(x_t, t))², shape [B]."""
    pred = model(noisy(schedule, x0, t, noise), t)
    return (noise - pred).pow(2).mean(dim=1)


def pretrain(
    model: nn.Module,
    schedule: NoiseSchedule,
    images: torch.Tensor,
    steps: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    log: Callable[[int, dict[str, float]], None] | None = None,
    log_every: int = 100,
) -> float:
    """Train ε_θ on `images` with the simple DDPM loss (AdamW, cosine LR decay; seeded).

    Calls `log(step, metrics)` every `log_every` steps and at the end; returns the mean loss of
    the last `log_every` steps.
    """
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / max(steps, 1)))
    )
    model.train()
    recent: list[float] = []
    started = time.perf_counter()
    for step in range(1, steps + 1):
        idx = torch.randint(0, images.shape[0], (batch_size,), generator=gen)
        t = torch.randint(0, schedule.num_timesteps, (batch_size,), generator=gen)
        noise = torch.randn(batch_size, images.shape[1], generator=gen)
        loss = denoising_errors(model, schedule, images[idx], t, noise).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        recent = (recent + [loss.item()])[-log_every:]
        if log is not None and (step % log_every == 0 or step == steps):
            log(
                step,
                {
                    "loss": sum(recent) / len(recent),
                    "learning_rate": float(scheduler.get_last_lr()[0]),
                    "elapsed_s": time.perf_counter() - started,
                },
            )
    model.eval()
    return sum(recent) / max(len(recent), 1)


@torch.no_grad()
def sample(
    model: nn.Module, schedule: NoiseSchedule, num_images: int, num_pixels: int, seed: int
) -> torch.Tensor:
    """DDPM ancestral sampling of `num_images` images [N, P] in [−1, 1], seeded."""
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    x = torch.randn(num_images, num_pixels, generator=gen)
    ab = schedule.alpha_bars
    for t in range(schedule.num_timesteps - 1, -1, -1):
        ts = torch.full((num_images,), t, dtype=torch.int64)
        eps = model(x, ts)
        x0 = ((x - (1 - ab[t]).sqrt() * eps) / ab[t].sqrt()).clamp(-1, 1)
        ab_prev = ab[t - 1] if t > 0 else torch.tensor(1.0)
        beta = schedule.betas[t]
        mean = (ab_prev.sqrt() * beta / (1 - ab[t])) * x0 + (
            schedule.alphas[t].sqrt() * (1 - ab_prev) / (1 - ab[t])
        ) * x
        if t > 0:
            var = (1 - ab_prev) / (1 - ab[t]) * beta
            x = mean + var.sqrt() * torch.randn(num_images, num_pixels, generator=gen)
        else:
            x = mean
    model.train(was_training)
    return x.clamp(-1, 1)
