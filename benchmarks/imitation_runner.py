"""One run of imitation 1.0.1's preference comparisons (or of its PPO on the true reward), for
``benchmarks/control_imitation.py``.

Executed by the python of imitation's own virtualenv (gymnasium 0.29, stable-baselines3 2.2.1),
never by prefloop's: it imports nothing from prefloop. It writes one JSON object to ``--out``:
the deterministic policy's true returns on ``--eval-episodes`` fresh episodes, the wall time, the
env steps the agent trained on, the settings, and — if imitation raised — the error's type and
message instead of returns (a crash is a result, not a failure of this script).

The setup follows imitation's documented Pendulum example (docs/algorithms/preference_comparisons:
``BasicRewardNet`` with a ``RunningNorm`` input layer, ``RandomFragmenter``, ``BasicRewardTrainer``
with the cross-entropy loss and 10 epochs, ``initial_epoch_multiplier`` 4, ``initial_comparison_frac``
0.1, ``exploration_frac`` 0.05, the hyperbolic query schedule, 60 iterations "for better
performance"), with these changes so that the two frameworks see the same task:

- the teacher is the oracle: ``SyntheticGatherer(temperature=0)`` prefers the fragment with the
  larger true return and answers ½ on equal returns (prefloop's ``--teacher oracle``);
- fragments of 25 steps (prefloop's ``segment_length``);
- the agent is stable-baselines3's PPO with the RL Zoo's tuned hyperparameters for the env
  (``ZOO_PPO``), its linear schedules annealed over the whole run's env steps (the zoo's meaning):
  SB3's own progress counter restarts at every ``learn`` call that imitation makes per iteration;
- ``--total-steps`` is the env steps the agent trains in all: imitation trains after each of its
  ``num_iterations`` + 1 rounds, so it is asked for n / (n + 1) of them (exact when the benchmark
  picks n, see ``control_imitation.imitation_schedule``);
- ``allow_variable_horizon=True``, as imitation's own ``cartpole`` config sets it (CartPole
  episodes end when the pole falls; Pendulum's always last 200 steps).

    python benchmarks/imitation_runner.py --env CartPole-v1 --labels 100 --total-steps 50000 \\
        --seed 0 --out run.json
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from typing import Any

# The RL Zoo's tuned PPO hyperparameters (rl-baselines3-zoo, hyperparams/ppo.yml); "lin_X" is a
# value annealed linearly from X to 0 over the run.
ZOO_PPO: dict[str, dict[str, Any]] = {
    "CartPole-v1": {
        "n_envs": 8,
        "n_steps": 32,
        "batch_size": 256,
        "gae_lambda": 0.8,
        "gamma": 0.98,
        "n_epochs": 20,
        "ent_coef": 0.0,
        "learning_rate": "lin_0.001",
        "clip_range": "lin_0.2",
    },
    "Pendulum-v1": {
        "n_envs": 4,
        "n_steps": 1024,
        "gae_lambda": 0.95,
        "gamma": 0.9,
        "n_epochs": 10,
        "ent_coef": 0.0,
        "learning_rate": 1e-3,
        "clip_range": 0.2,
        "use_sde": True,
        "sde_sample_freq": 4,
    },
}


def make_agent(env_id: str, venv: Any, seed: int, total_steps: int) -> Any:
    """SB3 PPO with the zoo's settings; ``lin_X`` schedules read the agent's own step count."""
    from stable_baselines3 import PPO

    kwargs = {k: v for k, v in ZOO_PPO[env_id].items() if k != "n_envs"}
    made: list[Any] = []  # the agent, once built (PPO calls the schedules while it is built)

    def linear(start: float) -> Any:
        return lambda _progress: start * max(0.0, 1.0 - (made[0].num_timesteps if made else 0) / total_steps)

    for key, value in kwargs.items():
        if isinstance(value, str) and value.startswith("lin_"):
            kwargs[key] = linear(float(value[4:]))
    made.append(PPO("MlpPolicy", venv, seed=seed, verbose=0, **kwargs))
    return made[0]


def evaluate(agent: Any, env_id: str, episodes: int, seed: int) -> list[float]:
    """True returns of the deterministic policy, episode i reset with seed + i (as prefloop does)."""
    import gymnasium as gym

    env = gym.make(env_id)
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            action, _ = agent.predict(obs, deterministic=True)
            obs, r, terminated, truncated, _ = env.step(action)
            total += float(r)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def train_preference(args: argparse.Namespace, venv: Any, rng: Any, done: list[int]) -> Any:
    """imitation's loop; ``done`` receives each finished iteration's index (to say where a crash hit)."""
    from imitation.algorithms import preference_comparisons as pc
    from imitation.rewards.reward_nets import BasicRewardNet
    from imitation.util.networks import RunningNorm

    reward_net = BasicRewardNet(venv.observation_space, venv.action_space, normalize_input_layer=RunningNorm)
    preference_model = pc.PreferenceModel(reward_net)
    reward_trainer = pc.BasicRewardTrainer(
        preference_model=preference_model,
        loss=pc.CrossEntropyRewardLoss(),
        epochs=args.reward_epochs,
        rng=rng,
    )
    agent = make_agent(args.env, venv, args.seed, args.total_steps)
    trajectory_generator = pc.AgentTrainer(
        algorithm=agent,
        reward_fn=reward_net,
        venv=venv,
        exploration_frac=args.exploration_frac,
        rng=rng,
    )
    trainer = pc.PreferenceComparisons(
        trajectory_generator,
        reward_net,
        num_iterations=args.num_iterations,
        fragmenter=pc.RandomFragmenter(warning_threshold=0, rng=rng),
        preference_gatherer=pc.SyntheticGatherer(temperature=0, rng=rng),  # the oracle
        reward_trainer=reward_trainer,
        fragment_length=args.fragment_length,
        transition_oversampling=1,
        initial_comparison_frac=args.initial_comparison_frac,
        initial_epoch_multiplier=args.initial_epoch_multiplier,
        allow_variable_horizon=True,
        query_schedule="hyperbolic",
    )
    # imitation trains total_timesteps / num_iterations steps after each of its num_iterations + 1
    # rounds (the initial one too): ask for n / (n + 1) of the env steps to train all of them
    total_timesteps = args.total_steps * args.num_iterations // (args.num_iterations + 1)
    trainer.train(total_timesteps=total_timesteps, total_comparisons=args.labels, callback=done.append)
    return agent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", required=True, choices=sorted(ZOO_PPO))
    parser.add_argument("--reward", choices=["preference", "true"], default="preference")
    parser.add_argument("--labels", type=int, default=200)
    parser.add_argument("--total-steps", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--fragment-length", type=int, default=25)
    parser.add_argument("--num-iterations", type=int, default=60)
    parser.add_argument("--reward-epochs", type=int, default=10)
    parser.add_argument("--initial-comparison-frac", type=float, default=0.1)
    parser.add_argument("--initial-epoch-multiplier", type=float, default=4.0)
    parser.add_argument("--exploration-frac", type=float, default=0.05)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    started = time.perf_counter()
    import imitation
    import numpy as np
    import stable_baselines3
    import torch
    from imitation.util.util import make_vec_env

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    venv = make_vec_env(args.env, rng=rng, n_envs=ZOO_PPO[args.env]["n_envs"])
    result: dict[str, Any] = {
        "framework": "imitation",
        "versions": {
            "imitation": imitation.__version__,
            "stable_baselines3": stable_baselines3.__version__,
            "torch": torch.__version__,
        },
        "settings": {**vars(args), "ppo": ZOO_PPO[args.env]},
        "error": None,
    }
    done: list[int] = []
    try:
        if args.reward == "true":
            agent = make_agent(args.env, venv, args.seed, args.total_steps)
            agent.learn(total_timesteps=args.total_steps)
        else:
            agent = train_preference(args, venv, rng, done)
        result["env_steps"] = int(agent.num_timesteps)
        returns = evaluate(agent, args.env, args.eval_episodes, args.seed + 10_000)
        result["eval_returns"] = returns
        result["eval_return_mean"] = float(np.mean(returns))
    except Exception as exc:  # imitation's failure is the measurement
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()[-4000:]
    result["iterations_done"] = len(done)
    result["train_eval_s"] = time.perf_counter() - started
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
