"""The reward predictor: an ensemble of small MLPs r̂_m(o, a), each fit to its own bootstrap resample.

Christiano et al. 2017 §2.2.3: several predictors, each trained on |D| comparisons drawn with
replacement from D; the reward the agent sees is their mean (each member normalised by the loop's
running statistics). Each member minimises `prefloop.losses.segment_preference_loss` (Bradley–Terry
over summed segment rewards with a 10 % random-answer rate). Members keep their weights between
rounds (training continues as labels arrive); a new bootstrap resample is drawn every round.

Input: the observation concatenated with the action as the env executed it (one-hot for discrete
actions; clipped to the bounds for continuous ones).
Two hidden layers of 64 leaky-ReLU units (the paper's MuJoCo predictor), a linear output.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from prefloop.control.envs import EnvInfo
from prefloop.losses.segment import segment_preference_loss

__all__ = ["RewardEnsemble", "load_reward_model"]


class RewardEnsemble(nn.Module):
    """M independent MLPs over (obs, action); ``forward`` gives [M, ...] per-step rewards."""

    def __init__(self, info: EnvInfo, members: int = 3, hidden: int = 64):
        super().__init__()
        if members < 1:
            raise ValueError(f"the reward ensemble needs at least 1 member, got {members}")
        self.info = info
        self.hidden = hidden
        n_in = info.obs_dim + info.action_dim
        self.members = nn.ModuleList(
            nn.Sequential(
                nn.Linear(n_in, hidden),
                nn.LeakyReLU(),
                nn.Linear(hidden, hidden),
                nn.LeakyReLU(),
                nn.Linear(hidden, 1),
            )
            for _ in range(members)
        )

    def features(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """obs [..., d] and actions [..., 1] (discrete index) or [..., a] -> [..., d + action_dim]."""
        if self.info.discrete:
            onehot = nn.functional.one_hot(actions[..., 0].long(), self.info.action_dim).to(obs.dtype)
            return torch.cat([obs, onehot], dim=-1)
        return torch.cat([obs, actions.to(obs.dtype)], dim=-1)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        x = self.features(obs, actions)
        return torch.stack([m(x).squeeze(-1) for m in self.members])

    @torch.no_grad()
    def predict(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Per-member rewards [M, ...] of steps obs [..., d], actions [..., a] (numpy in, numpy out)."""
        out = self(torch.as_tensor(obs, dtype=torch.float32), torch.as_tensor(actions, dtype=torch.float32))
        return out.numpy()

    def fit(
        self,
        obs_a: torch.Tensor,
        act_a: torch.Tensor,
        obs_b: torch.Tensor,
        act_b: torch.Tensor,
        labels: torch.Tensor,
        optimizers: Sequence[torch.optim.Optimizer],
        epochs: int,
        batch_size: int,
        random_answer: float,
        rng: np.random.Generator,
    ) -> dict[str, float]:
        """Train every member for ``epochs`` passes over its own bootstrap resample of the N labels.

        obs_a/obs_b [N, L, d], act_a/act_b [N, L, a], labels [N]. Returns the members' mean loss and
        accuracy on their last epoch (reward/loss, reward/train_accuracy)."""
        n = len(labels)
        losses, accs = [], []
        for member, opt in zip(self.members, optimizers):
            sample = torch.as_tensor(rng.integers(0, n, size=n))
            feats_a = self.features(obs_a[sample], act_a[sample])
            feats_b = self.features(obs_b[sample], act_b[sample])
            y = labels[sample]
            for epoch in range(epochs):
                order = torch.as_tensor(rng.permutation(n))
                for start in range(0, n, batch_size):
                    idx = order[start : start + batch_size]
                    loss, metrics = segment_preference_loss(
                        member(feats_a[idx]).squeeze(-1),
                        member(feats_b[idx]).squeeze(-1),
                        y[idx],
                        random_answer,
                    )
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    if epoch == epochs - 1:
                        losses.append(loss.item())
                        if not np.isnan(metrics["segment/accuracy"]):
                            accs.append(metrics["segment/accuracy"])
        return {
            "reward/loss": float(np.mean(losses)) if losses else float("nan"),
            "reward/train_accuracy": float(np.mean(accs)) if accs else float("nan"),
        }


def agreement(ensemble: RewardEnsemble, a_obs, a_act, b_obs, b_act, true_a, true_b) -> float:
    """Share of pairs with different true returns whose mean predicted returns order them the same.

    a_obs/b_obs [K, L, d], a_act/b_act [K, L, a], true_a/true_b [K] summed true rewards. NaN when
    every pair has equal true returns."""
    pred_a = ensemble.predict(a_obs, a_act).mean(0).sum(-1)
    pred_b = ensemble.predict(b_obs, b_act).mean(0).sum(-1)
    differ = true_a != true_b
    if not differ.any():
        return float("nan")
    return float(((pred_a > pred_b) == (true_a > true_b))[differ].mean())


def save_reward_model(ensemble: RewardEnsemble, path: Path, normalizer: dict[str, float]) -> None:
    """PATH/reward_model.pt + PATH/reward_model.json (spaces, sizes, the agent's normalisation)."""
    from dataclasses import asdict

    path.mkdir(parents=True, exist_ok=True)
    torch.save(ensemble.state_dict(), path / "reward_model.pt")
    meta = {
        "env": asdict(ensemble.info),
        "members": len(ensemble.members),
        "hidden": ensemble.hidden,
        "normalizer": normalizer,
    }
    (path / "reward_model.json").write_text(json.dumps(meta, indent=2))


def load_reward_model(path: str | Path) -> RewardEnsemble:
    """The ensemble saved by `prefloop control` (OUTPUT/reward_model/); ``predict(obs, actions)``."""
    path = Path(path)
    meta = json.loads((path / "reward_model.json").read_text())
    env = dict(meta["env"])
    env["action_low"], env["action_high"] = tuple(env["action_low"]), tuple(env["action_high"])
    ensemble = RewardEnsemble(EnvInfo(**env), members=int(meta["members"]), hidden=int(meta["hidden"]))
    ensemble.load_state_dict(torch.load(path / "reward_model.pt", weights_only=True))
    ensemble.eval()
    return ensemble
