"""A small actor-critic for vector observations, PPO's update on it, and saving / loading it.

The actor and the critic are separate MLPs (two tanh hidden layers, orthogonal init with a 0.01
gain on the policy head and 1 on the value head, as in the PPO implementations people check
against). Discrete actions: a categorical over logits. Continuous actions: a diagonal Gaussian
with a state-independent log standard deviation; the sampled action is stored unclipped (its
log-prob is the policy's) and clipped to the action bounds only when sent to the environment.

Observation normalisation (``update_obs_stats``, the loop's ``--obs-norm``, for MuJoCo tasks):
both networks read (o − μ) / √(σ² + 10⁻⁸), clipped to ±10, with μ, σ² the running mean and variance
of every observation the loop has passed (buffers, saved with the agent). Until the first update the
input is the raw observation.

The update uses prefloop's own pure losses (`prefloop.losses.rl`): `ppo_policy_loss` and
`value_loss` over steps laid out as [N, 1] (one row per step, T = 1, mask 1), after GAE was
computed over episode pieces by the loop (see `prefloop.control.loop`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prefloop.control.envs import EnvInfo
from prefloop.losses.rl import ppo_policy_loss, value_loss

__all__ = ["ActorCritic", "load_agent", "ppo_update", "save_agent"]


def _layer(n_in: int, n_out: int, gain: float = math.sqrt(2)) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def _mlp(n_in: int, hidden: int, n_out: int, out_gain: float) -> nn.Sequential:
    return nn.Sequential(
        _layer(n_in, hidden), nn.Tanh(), _layer(hidden, hidden), nn.Tanh(), _layer(hidden, n_out, out_gain)
    )


class ActorCritic(nn.Module):
    """π(a | o) and V(o) for one environment's spaces (`EnvInfo`)."""

    obs_mean: torch.Tensor
    obs_var: torch.Tensor
    obs_count: torch.Tensor

    def __init__(self, info: EnvInfo, hidden: int = 64):
        super().__init__()
        self.info = info
        self.hidden = hidden
        self.critic = _mlp(info.obs_dim, hidden, 1, 1.0)
        self.actor = _mlp(info.obs_dim, hidden, info.action_dim, 0.01)
        self.log_std = nn.Parameter(torch.zeros(info.action_dim), requires_grad=not info.discrete)
        self.register_buffer("obs_mean", torch.zeros(info.obs_dim, dtype=torch.float64))
        self.register_buffer("obs_var", torch.ones(info.obs_dim, dtype=torch.float64))
        self.register_buffer("obs_count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update_obs_stats(self, obs: np.ndarray | torch.Tensor) -> None:
        """Merge observations [N, obs_dim] into the running mean and variance (Chan et al.'s parallel
        update: exact for any split of the stream into batches)."""
        x = torch.as_tensor(obs, dtype=torch.float64).reshape(-1, self.info.obs_dim)
        n = float(len(x))
        if n == 0:
            return
        mean_b, var_b = x.mean(0), x.var(0, unbiased=False)
        total = self.obs_count + n
        delta = mean_b - self.obs_mean
        m2 = self.obs_var * self.obs_count + var_b * n + delta**2 * self.obs_count * n / total
        self.obs_mean += delta * n / total
        self.obs_var.copy_(m2 / total)
        self.obs_count.copy_(total)

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """The networks' input: standardised and clipped once statistics exist, else obs as it is."""
        if self.obs_count.item() == 0:
            return obs
        scaled = (obs - self.obs_mean) / torch.sqrt(self.obs_var + 1e-8)
        return scaled.clamp(-10.0, 10.0).to(obs.dtype)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(o): [N, obs_dim] -> [N]."""
        return self.critic(self.normalize(obs)).squeeze(-1)

    def distribution(self, obs: torch.Tensor) -> torch.distributions.Distribution:
        out = self.actor(self.normalize(obs))
        if self.info.discrete:
            return torch.distributions.Categorical(logits=out)
        return torch.distributions.Normal(out, self.log_std.exp().expand_as(out))

    def log_prob_entropy(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log π(a | o) [N], entropy [N]); actions [N] (discrete, as floats) or [N, action_dim]."""
        dist = self.distribution(obs)
        if self.info.discrete:
            return dist.log_prob(actions.long()), dist.entropy()
        return dist.log_prob(actions).sum(-1), dist.entropy().sum(-1)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(actions, log-probs) for a batch of observations; deterministic = the mode / the mean."""
        dist = self.distribution(obs)
        if deterministic:
            action = dist.probs.argmax(-1) if self.info.discrete else dist.mean  # type: ignore[attr-defined]
        else:
            action = dist.sample()
        logp = dist.log_prob(action) if self.info.discrete else dist.log_prob(action).sum(-1)
        return action, logp

    def env_actions(self, actions: torch.Tensor) -> np.ndarray:
        """Actions as the environment takes them: integers, or clipped to the action bounds."""
        if self.info.discrete:
            return actions.long().cpu().numpy()
        low, high = np.asarray(self.info.action_low), np.asarray(self.info.action_high)
        return np.clip(actions.cpu().numpy(), low, high).astype(np.float32)


def ppo_update(
    agent: ActorCritic,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    epochs: int,
    minibatch_size: int,
    clip_eps: float,
    vf_coef: float,
    ent_coef: float,
    max_grad_norm: float,
    value_clip: float | None,
    generator: torch.Generator,
) -> dict[str, float]:
    """PPO epochs over one rollout. batch: obs [N, d], actions, logps, values, advantages, returns [N].

    Advantages are normalised per minibatch (mean 0, std 1), as in the PPO reference code.
    Returns the last epoch's mean metrics (loss, policy/*, value/*, entropy)."""
    n = batch["obs"].shape[0]
    ones = torch.ones(min(minibatch_size, n), 1)
    sums: dict[str, float] = {}
    count = 0
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, minibatch_size):
            idx = order[start : start + minibatch_size]
            mask = ones[: len(idx)]
            logps, entropy = agent.log_prob_entropy(batch["obs"][idx], batch["actions"][idx])
            adv = batch["advantages"][idx]
            adv = (adv - adv.mean()) / (adv.std() + 1e-8) if len(idx) > 1 else adv
            pl, pmetrics = ppo_policy_loss(
                logps.unsqueeze(1), batch["logps"][idx].unsqueeze(1), adv.unsqueeze(1), mask, clip_eps
            )
            vl, vmetrics = value_loss(
                agent.value(batch["obs"][idx]).unsqueeze(1),
                batch["values"][idx].unsqueeze(1),
                batch["returns"][idx].unsqueeze(1),
                mask,
                value_clip,
            )
            ent = entropy.mean()
            loss = pl + vf_coef * vl - ent_coef * ent
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(agent.parameters(), max_grad_norm)
            optimizer.step()
            if epoch == epochs - 1:
                parts = {"loss": loss.item(), "entropy": ent.item(), **pmetrics, **vmetrics}
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
    return {k: v / max(count, 1) for k, v in sums.items()}


def save_agent(agent: ActorCritic, path: Path) -> None:
    """Writes PATH/agent.pt (state dict) and PATH/agent.json (env spaces + sizes)."""
    path.mkdir(parents=True, exist_ok=True)
    torch.save(agent.state_dict(), path / "agent.pt")
    (path / "agent.json").write_text(
        json.dumps({"env": asdict(agent.info), "hidden": agent.hidden}, indent=2)
    )


def load_agent(path: str | Path) -> ActorCritic:
    """The agent saved by `prefloop control` (OUTPUT/agent/), ready for `agent.act(obs)`.

    >>> agent = load_agent("runs/cartpole/agent")                          # doctest: +SKIP
    >>> actions, _ = agent.act(torch.as_tensor(obs), deterministic=True)   # doctest: +SKIP
    """
    path = Path(path)
    meta: dict[str, Any] = json.loads((path / "agent.json").read_text())
    env = dict(meta["env"])
    env["action_low"], env["action_high"] = tuple(env["action_low"]), tuple(env["action_high"])
    agent = ActorCritic(EnvInfo(**env), hidden=int(meta["hidden"]))
    agent.load_state_dict(torch.load(path / "agent.pt", weights_only=True))
    agent.eval()
    return agent
