"""Gymnasium environments for the control loop: checked ids, vectorized copies, the spaces' shapes.

`make_envs` builds `gymnasium.vector.SyncVectorEnv` with same-step autoreset (the observation
returned on the last step of an episode is the next episode's first; the real last observation is
in ``info["final_obs"]``). Bad ids and missing simulators fail with one line that says what to do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from prefloop.train.config import TrainError

__all__ = ["ControlError", "EnvInfo", "env_info", "make_envs", "render_frames"]


class ControlError(TrainError):
    """A control run that cannot start as configured (unknown env, missing simulator, budget)."""


@dataclass(frozen=True)
class EnvInfo:
    """What the agent and the reward predictor need to know about an environment."""

    env_id: str
    obs_dim: int
    discrete: bool
    action_dim: int
    """Number of actions (discrete) or the action vector's length (continuous)."""
    action_low: tuple[float, ...] = ()
    action_high: tuple[float, ...] = ()
    max_episode_steps: int | None = None


def _check_id(env_id: str) -> Any:
    try:
        import gymnasium as gym
    except ImportError:
        raise ControlError("prefloop control needs gymnasium: pip install 'prefloop[control]'") from None
    try:
        spec = gym.spec(env_id)
    except gym.error.Error as exc:
        hint = " ".join(str(exc).split())
        raise ControlError(
            f"--env {env_id}: not a registered gymnasium environment ({hint}); "
            "try CartPole-v1, Pendulum-v1, or a MuJoCo id such as Hopper-v5"
        ) from None
    entry = str(spec.entry_point)
    if "mujoco" in entry:
        try:
            import mujoco  # noqa: F401
        except ImportError:
            raise ControlError(
                f"--env {env_id} needs the MuJoCo simulator: pip install 'gymnasium[mujoco]' (or pip install mujoco)"
            ) from None
    return spec


def _make_one(env_id: str, **kwargs: Any) -> Any:
    import gymnasium as gym

    try:
        return gym.make(env_id, **kwargs)
    except gym.error.DependencyNotInstalled as exc:
        raise ControlError(f"--env {env_id}: {' '.join(str(exc).split())}") from None


def env_info(env_id: str) -> EnvInfo:
    """Check the id (one-line errors) and describe its observation and action spaces."""
    import gymnasium as gym
    import numpy as np

    spec = _check_id(env_id)
    env = _make_one(env_id)
    try:
        obs_space, act_space = env.observation_space, env.action_space
    finally:
        env.close()
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise ControlError(
            f"--env {env_id}: observations must be a flat vector (Box of rank 1), got {obs_space}; "
            "image observations are not supported"
        )
    obs_dim = int(obs_space.shape[0])
    steps = spec.max_episode_steps
    if isinstance(act_space, gym.spaces.Discrete):
        return EnvInfo(env_id, obs_dim, True, int(act_space.n), max_episode_steps=steps)
    if isinstance(act_space, gym.spaces.Box) and len(act_space.shape) == 1:
        low = tuple(float(x) for x in np.asarray(act_space.low))
        high = tuple(float(x) for x in np.asarray(act_space.high))
        return EnvInfo(env_id, obs_dim, False, int(act_space.shape[0]), low, high, steps)
    raise ControlError(f"--env {env_id}: action space {act_space} is not supported (Discrete or a flat Box)")


def make_envs(env_id: str, num_envs: int, seed: int, render: bool = False) -> tuple[Any, Any]:
    """(envs, first observations [num_envs, obs_dim]): `num_envs` copies in a SyncVectorEnv with
    same-step autoreset, reset with seeds seed, seed+1, … With ``render``, the envs draw
    ``rgb_array`` frames (`render_frames`); a missing renderer (pygame) fails here in one line."""
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode

    kwargs: dict[str, Any] = {"render_mode": "rgb_array"} if render else {}
    if render:  # pygame draws off-screen; without this SDL looks for a display and complains
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    _check_id(env_id)
    _make_one(env_id, **kwargs).close()  # a missing dependency fails here with its message
    envs = gym.vector.SyncVectorEnv(
        [lambda: gym.make(env_id, **kwargs) for _ in range(num_envs)], autoreset_mode=AutoresetMode.SAME_STEP
    )
    obs, _ = envs.reset(seed=seed)
    envs.action_space.seed(seed)
    if render:
        render_frames(envs, env_id)
    return envs, obs


def render_frames(envs: Any, env_id: str) -> list[Any]:
    """Each env's current frame (RGB [H, W, 3]) of the observation it will act on next."""
    import gymnasium as gym

    try:
        frames = list(envs.render())
    except gym.error.DependencyNotInstalled as exc:
        envs.close()
        raise ControlError(f"--env {env_id} cannot draw clips: {' '.join(str(exc).split())}") from None
    if any(f is None for f in frames):
        raise ControlError(f"--env {env_id} draws no rgb_array frames: clips for people need them")
    return frames
