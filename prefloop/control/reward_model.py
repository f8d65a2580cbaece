"""The reward predictor: an ensemble of small MLPs r̂_m(o, a), each fit to its own bootstrap resample.

Christiano et al. 2017 §2.2.3: several predictors, each trained on |D| comparisons drawn with
replacement from D; the reward the agent sees is their mean, standardised by the loop
(`prefloop.control.loop.reward_moments`: the mean's statistics over the labelled segments, not each
member's). Each member minimises `prefloop.losses.segment_preference_loss` (Bradley–Terry
over summed segment rewards with a 10 % random-answer rate). Members keep their weights between
rounds (training continues as labels arrive); a new bootstrap resample is drawn every round.

Input: the observation concatenated with the action as the env executed it (one-hot for discrete
actions; clipped to the bounds for continuous ones) and an absorbing-state indicator. The steps that
pad a terminated segment (`segments.py`) are the absorbing state itself, one input for every way an
episode can end: observation and action features 0, indicator 1 (Kostrikov et al. 2019, "Discriminator-
Actor-Critic", represent absorbing states so). Its reward r̂_abs is then one learned number, so what the
first labels teach about ending an episode (the random policy's segments end early) carries over to
terminal states the predictor never saw (a cart that drifts off the track instead of dropping the pole),
where repeating the last observation would extrapolate the MLP.
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

    obs_mean: torch.Tensor
    obs_std: torch.Tensor

    def __init__(self, info: EnvInfo, members: int = 3, hidden: int = 64):
        super().__init__()
        if members < 1:
            raise ValueError(f"the reward ensemble needs at least 1 member, got {members}")
        self.info = info
        self.hidden = hidden
        n_in = info.obs_dim + info.action_dim + 1  # + the absorbing-state indicator
        # Observations are standardised with statistics fixed once (`set_obs_scale`, from the first
        # labelled rollout), so features of small range (CartPole's pole angle) are not drowned out.
        self.register_buffer("obs_mean", torch.zeros(info.obs_dim))
        self.register_buffer("obs_std", torch.ones(info.obs_dim))
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

    def set_obs_scale(self, obs: np.ndarray) -> None:
        """Fix the input standardisation to the mean and std of observations obs [N, d]."""
        flat = torch.as_tensor(obs, dtype=torch.float32).reshape(-1, self.info.obs_dim)
        self.obs_mean.copy_(flat.mean(0))
        self.obs_std.copy_(flat.std(0).clamp_min(1e-6) if len(flat) > 1 else torch.ones(self.info.obs_dim))

    def features(
        self, obs: torch.Tensor, actions: torch.Tensor, absorbing: torch.Tensor | None = None
    ) -> torch.Tensor:
        """obs [..., d], actions [..., 1] (discrete index) or [..., a], absorbing [...] (bool; None = no
        step is absorbing) -> [..., d + action_dim + 1]. Absorbing steps become (0, …, 0, 1)."""
        obs = (obs - self.obs_mean) / self.obs_std
        if self.info.discrete:
            act = nn.functional.one_hot(actions[..., 0].long(), self.info.action_dim).to(obs.dtype)
        else:
            act = actions.to(obs.dtype)
        flag = torch.zeros_like(obs[..., :1])
        x = torch.cat([obs, act, flag], dim=-1)
        if absorbing is not None:
            mask = torch.as_tensor(absorbing, dtype=torch.bool)[..., None]
            x = torch.where(mask, self.absorbing_features(), x)
        return x

    def absorbing_features(self) -> torch.Tensor:
        """The absorbing state's input: zero observation and action features, indicator 1."""
        x = torch.zeros(self.info.obs_dim + self.info.action_dim + 1, device=self.obs_mean.device)
        x[-1] = 1.0
        return x

    def forward(
        self, obs: torch.Tensor, actions: torch.Tensor, absorbing: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = self.features(obs, actions, absorbing)
        return torch.stack([m(x).squeeze(-1) for m in self.members])

    @torch.no_grad()
    def predict(
        self, obs: np.ndarray, actions: np.ndarray, absorbing: np.ndarray | None = None
    ) -> np.ndarray:
        """Per-member rewards [M, ...] of steps obs [..., d], actions [..., a], absorbing [...] (numpy in,
        numpy out)."""
        out = self(
            torch.as_tensor(obs, dtype=torch.float32),
            torch.as_tensor(actions, dtype=torch.float32),
            None if absorbing is None else torch.as_tensor(absorbing, dtype=torch.bool),
        )
        return out.numpy()

    @torch.no_grad()
    def absorbing_reward(self) -> np.ndarray:
        """Per-member reward [M] of the absorbing state (after termination)."""
        x = self.absorbing_features()
        return torch.stack([m(x).squeeze(-1) for m in self.members]).numpy()

    def fit(
        self,
        obs_a: torch.Tensor,
        act_a: torch.Tensor,
        abs_a: torch.Tensor,
        obs_b: torch.Tensor,
        act_b: torch.Tensor,
        abs_b: torch.Tensor,
        labels: torch.Tensor,
        optimizers: Sequence[torch.optim.Optimizer],
        epochs: int,
        batch_size: int,
        random_answer: float,
        rng: np.random.Generator,
    ) -> dict[str, float]:
        """Train every member for ``epochs`` passes over its own bootstrap resample of the N labels.

        obs_a/obs_b [N, L, d], act_a/act_b [N, L, a], abs_a/abs_b [N, L] (absorbing steps), labels [N]. Returns the members' mean loss and
        accuracy on their last epoch (reward/loss, reward/train_accuracy)."""
        n = len(labels)
        losses, accs = [], []
        for member, opt in zip(self.members, optimizers):
            sample = torch.as_tensor(rng.integers(0, n, size=n))
            feats_a = self.features(obs_a[sample], act_a[sample], abs_a[sample])
            feats_b = self.features(obs_b[sample], act_b[sample], abs_b[sample])
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


def agreement(ensemble: RewardEnsemble, a_obs, a_act, a_abs, b_obs, b_act, b_abs, true_a, true_b) -> float:
    """Share of pairs with different true returns whose mean predicted returns order them the same.

    a_obs/b_obs [K, L, d], a_act/b_act [K, L, a], a_abs/b_abs [K, L] absorbing steps, true_a/true_b [K]
    summed true rewards. NaN when every pair has equal true returns."""
    pred_a = ensemble.predict(a_obs, a_act, a_abs).mean(0).sum(-1)
    pred_b = ensemble.predict(b_obs, b_act, b_abs).mean(0).sum(-1)
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
