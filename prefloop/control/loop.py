"""`prefloop control`: preference-based RL on gymnasium tasks (Christiano et al. 2017; B-Pref's teachers).

Provenance
----------
Christiano, Leike, Brown, Martic, Legg & Amodei 2017, "Deep Reinforcement Learning from Human
Preferences"; Lee, Smith, Dragan & Abbeel 2021, "B-Pref" (the simulated teachers). One iteration:

1. the agent acts for ``rollout_steps`` in ``num_envs`` environments; the steps enter the segment buffer;
2. labels due by the schedule (`segments.labels_due`) are asked: pairs of ``segment_length``-step
   segments, chosen uniformly or by the ensemble's disagreement (`teachers.selection`), compared by a
   `SegmentTeacher`: a simulated teacher over the env's true reward, or people judging clips of the
   segments in the feedback server (``--teacher human``, `human.py`; only then are frames drawn);
   the reward ensemble is then retrained;
3. the rollout's steps are rewarded by the ensemble's mean r̂(o, a), normalised by running mean/std
   (reset when the predictor is retrained); ``--reward true`` uses the env's reward instead;
4. GAE (`prefloop.losses.rl.gae`) and PPO epochs (`ppo_policy_loss`, `value_loss`).

GAE layout: each env's rollout is cut into episode pieces, one row of a [P, T] batch per piece
(mask 1 on its steps); the bootstrap γ·V(s') after a piece's last step is folded into that step's
reward, since `gae` takes V = 0 past a row's end. V(s') is the critic's value of the next (or
time-limit final) observation when the piece was cut, and the absorbing value r̂_abs/(1 − γ) when the
episode terminated (0 for the true reward): after termination the episode sits in the absorbing
state, which pads terminated segments for the teacher and the predictor (`segments.py`) and is one
input of the predictor (`reward_model.py`). This keeps the agent's objective invariant to a shift
of r̂ (Bradley–Terry cannot identify one). The PPO losses then see steps flattened to [N, 1].

Deviations and choices where the paper is silent: see docs/algorithms/control.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from prefloop.control.agent import ActorCritic, ppo_update, save_agent
from prefloop.control.clips import encode_frame
from prefloop.control.envs import ControlError, EnvInfo, env_info, make_envs, render_frames
from prefloop.control.reward_model import RewardEnsemble, agreement, save_reward_model
from prefloop.control.segments import (
    RUNNING,
    TERMINATED,
    TRUNCATED,
    SegmentBatch,
    SegmentBuffer,
    SegmentTeacher,
    SimulatedSegmentTeacher,
    label_of,
    labels_due,
    segment_teacher,
)
from prefloop.losses.rl import gae
from prefloop.rewards.shaping import RunningMoments
from prefloop.teachers.selection import select
from prefloop.train.logs import MetricsLogger

__all__ = ["ControlConfig", "main", "train"]


@dataclass
class ControlConfig:
    """Preference-based RL for control: PPO on a reward learned from simulated segment comparisons."""

    config: str | None = None
    """YAML file with values for any of these fields; flags override it."""
    env: str = "CartPole-v1"
    """Gymnasium id (classic control; MuJoCo ids such as Hopper-v5 need `pip install 'gymnasium[mujoco]'`)."""
    output_dir: str = "outputs/control"
    """Where agent/, reward_model/, metrics.jsonl, returns.png and summary.json are written."""
    reward: Literal["preference", "true"] = "preference"
    """'preference': learn the reward from comparisons; 'true': PPO on the env's reward (the baseline)."""
    labels: int = 300
    """Label budget: comparisons asked of the teacher over the whole run (skipped answers count)."""
    total_steps: int = 50_000
    """Environment steps (rounded up to whole iterations of num_envs × rollout_steps)."""
    teacher: Literal["oracle", "stoc", "mistake", "skip", "equal", "myopic", "human"] = "oracle"
    """B-Pref simulated teacher over the true reward (see docs/algorithms/control.md for each), or
    'human': people judge GIF clips of the segment pairs in the feedback server (--feedback-url)."""
    teacher_beta: float = 1.0
    """Rationality β of the 'stoc' teacher, in true-reward units of a segment's return."""
    segment_length: int = 25
    """Steps per segment (Christiano et al.'s and B-Pref's classic-control length)."""
    query_batch: int = 10
    """Labels per query round: whole batches as soon as a label is due (the last may be partial)."""
    query_selection: Literal["uniform", "disagreement"] = "disagreement"
    """Which pairs to ask: uniform, or the highest ensemble variance of P(a ≻ b)."""
    candidates_per_query: int = 10
    """Candidate pairs drawn per asked pair for 'disagreement' (the best-scoring are asked)."""
    initial_label_share: float = 0.25
    """Share of the budget asked from the initial policy's segments, before any training."""
    label_decay: float = 0.25
    """τ of the label rate ∝ 1/(1 + t/τ), as a fraction of total_steps."""
    ensemble_size: int = 3
    """Reward predictors in the ensemble (each on its own bootstrap resample)."""
    reward_obs_norm: bool = True
    """Standardise the predictor's observations by the first labelled rollout's mean and std (fixed from
    then on); --no-reward-obs-norm feeds them raw."""
    reward_hidden: int = 64
    """Hidden units of each reward MLP (two layers)."""
    reward_lr: float = 1e-3
    """Adam learning rate of the reward predictors."""
    reward_epochs: int = 50
    """Passes over each member's resample after every query round."""
    reward_batch_size: int = 32
    """Comparisons per reward-predictor step."""
    random_answer: float = 0.1
    """Assumed rate of uniformly random answers in the Bradley–Terry likelihood (Christiano: 0.1)."""
    segment_buffer: int = 2048
    """Most recent steps kept per env to draw segments from."""
    heldout_fraction: float = 0.2
    """Share of episodes held out (never queried) to measure the predictor's agreement."""
    eval_pairs: int = 200
    """Held-out segment pairs for the agreement metric."""
    num_envs: int = 4
    """Environments stepped together (gymnasium SyncVectorEnv)."""
    rollout_steps: int = 128
    """Steps per env per iteration."""
    ppo_epochs: int = 4
    """PPO passes over each rollout."""
    minibatch_size: int = 128
    """Steps per PPO minibatch."""
    learning_rate: float = 2.5e-4
    """Adam learning rate of the actor-critic (linearly annealed to 0 when anneal_lr)."""
    anneal_lr: bool = True
    """Anneal the agent's learning rate linearly to 0 over the run."""
    gamma: float = 0.99
    """Discount γ of the agent (not of the teacher)."""
    gae_lambda: float = 0.95
    """GAE λ."""
    clip_eps: float = 0.2
    """PPO's clip ε."""
    value_clip: float | None = None
    """Clip of the value loss around the rollout's values (None: plain squared error)."""
    vf_coef: float = 0.5
    """Weight of the value loss."""
    ent_coef: float = 0.01
    """Weight of the entropy bonus."""
    max_grad_norm: float = 0.5
    """Gradient-norm clip of the agent."""
    hidden: int = 64
    """Hidden units of the actor and the critic (two tanh layers each)."""
    obs_norm: bool = False
    """Standardise the agent's observations by the running mean/std of all it has seen (updated after
    each iteration's PPO update, so a rollout and its update read the same inputs; clipped to ±10);
    the usual setting for MuJoCo tasks."""
    eval_episodes: int = 10
    """Episodes of the final deterministic policy on fresh seeds, for summary.json."""
    baseline: str | None = None
    """metrics.jsonl of a --reward true run to draw beside this one in returns.png."""
    tensorboard: Literal["auto", "yes", "no"] = "no"
    """Also log to TensorBoard."""
    seed: int = 0
    """Seeds the envs, the agent, the teacher, the segment draws and the bootstrap resamples."""
    feedback_url: str = "http://127.0.0.1:8000"
    """--teacher human: root URL of the feedback server (`prefloop serve`)."""
    feedback_token_file: str | None = None
    """--teacher human: file holding an admin token of the server (else $PREFLOOP_FEEDBACK_TOKEN)."""
    campaign: int | None = None
    """--teacher human: campaign to add the clip pairs to (pairwise); default: the one this output
    dir used before, else a new one."""
    annotators: list[str] = dataclasses.field(default_factory=list)
    """--teacher human: annotators to add to the campaign (new names get accounts; tokens printed once)."""
    clip_width: int = 160
    """--teacher human: width in pixels of the clips' frames (height keeps the env's aspect)."""
    clip_fps: float = 10.0
    """--teacher human: frames per second of the clips (a 25-step segment plays 2.5 s at 10)."""
    human_wait_s: float = 0.0
    """--teacher human: stop (keeping every label received; rerun to resume) after waiting this long
    for one round of answers; 0 = wait as long as it takes."""
    poll_s: float = 2.0
    """--teacher human: seconds between polls of the server for answers."""


def check_config(cfg: ControlConfig) -> None:
    """One-line errors for values that cannot work (before any env is made)."""
    if cfg.reward == "preference":
        if cfg.query_batch < 1:
            raise ControlError(f"--query-batch must be >= 1, got {cfg.query_batch}")
        if cfg.labels < cfg.query_batch:
            raise ControlError(
                f"--labels {cfg.labels} is smaller than one query batch (--query-batch {cfg.query_batch}): "
                f"ask for at least {cfg.query_batch} labels or lower --query-batch"
            )
    positive = {
        "total_steps": cfg.total_steps,
        "num_envs": cfg.num_envs,
        "rollout_steps": cfg.rollout_steps,
        "segment_length": cfg.segment_length,
        "ensemble_size": cfg.ensemble_size,
        "minibatch_size": cfg.minibatch_size,
        "reward_batch_size": cfg.reward_batch_size,
        "segment_buffer": cfg.segment_buffer,
        "candidates_per_query": cfg.candidates_per_query,
    }
    for name, value in positive.items():
        if value < 1:
            raise ControlError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if cfg.query_selection == "disagreement" and cfg.ensemble_size < 2 and cfg.reward == "preference":
        raise ControlError("--query-selection disagreement needs --ensemble-size >= 2")
    if not 0 <= cfg.initial_label_share <= 1:
        raise ControlError(f"--initial-label-share must be in [0, 1], got {cfg.initial_label_share}")
    if not 0 < cfg.gamma < 1:
        raise ControlError(f"--gamma must be in (0, 1), got {cfg.gamma}")
    if cfg.teacher == "human" and cfg.reward == "preference":
        if cfg.clip_width < 16:
            raise ControlError(f"--clip-width must be >= 16 pixels, got {cfg.clip_width}")
        if not cfg.clip_fps > 0 or cfg.poll_s <= 0 or cfg.human_wait_s < 0:
            raise ControlError("--clip-fps and --poll-s must be > 0, --human-wait-s >= 0")


# --------------------------------------------------------------------------- pieces of the loop


def episode_pieces(ends: np.ndarray) -> list[tuple[int, int, int]]:
    """(env, first step, last step) of every episode piece in a rollout's ends [T, E]."""
    steps, n_envs = ends.shape
    pieces = []
    for e in range(n_envs):
        first = 0
        for t in range(steps):
            if ends[t, e] != RUNNING or t == steps - 1:
                pieces.append((e, first, t))
                first = t + 1
    return pieces


def advantages(
    rewards: np.ndarray,
    values: np.ndarray,
    ends: np.ndarray,
    bootstrap: np.ndarray,
    gamma: float,
    lam: float,
) -> tuple[np.ndarray, np.ndarray]:
    """GAE over episode pieces. rewards, values, ends, bootstrap: [T, E] (bootstrap = V after the step,
    used where a piece ends). Returns (advantages, returns) [T, E]."""
    steps = rewards.shape[0]
    pieces = episode_pieces(ends)
    r = torch.zeros(len(pieces), steps, dtype=torch.float64)
    v = torch.zeros_like(r)
    m = torch.zeros_like(r)
    for p, (e, first, last) in enumerate(pieces):
        n = last - first + 1
        r[p, :n] = torch.as_tensor(rewards[first : last + 1, e])
        r[p, n - 1] += gamma * float(bootstrap[last, e])
        v[p, :n] = torch.as_tensor(values[first : last + 1, e])
        m[p, :n] = 1.0
    adv, ret = gae(r, v, m, gamma=gamma, lam=lam)
    out_adv, out_ret = np.zeros_like(rewards, dtype=np.float64), np.zeros_like(rewards, dtype=np.float64)
    for p, (e, first, last) in enumerate(pieces):
        n = last - first + 1
        out_adv[first : last + 1, e] = adv[p, :n].numpy()
        out_ret[first : last + 1, e] = ret[p, :n].numpy()
    return out_adv, out_ret


class PreferenceData:
    """The labelled comparisons so far (segments copied out of the buffer, so they outlive it;
    their frames are not kept)."""

    def __init__(self) -> None:
        self.a: list[SegmentBatch] = []
        self.b: list[SegmentBatch] = []
        self.labels: list[np.ndarray] = []

    def add(self, a: SegmentBatch, b: SegmentBatch, labels: np.ndarray) -> None:
        keep = np.flatnonzero(~np.isnan(labels))
        if len(keep):
            self.a.append(a.take(keep).without_frames())
            self.b.append(b.take(keep).without_frames())
            self.labels.append(labels[keep])

    def __len__(self) -> int:
        return sum(len(x) for x in self.labels)

    def tensors(
        self,
    ) -> tuple[
        torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor
    ]:
        """(obs_a, actions_a, absorbing_a, obs_b, actions_b, absorbing_b, labels) of every answered
        comparison; float32, the absorbing masks bool."""

        def cat(parts: list[np.ndarray]) -> torch.Tensor:
            return torch.as_tensor(np.concatenate(parts), dtype=torch.float32)

        def absorbing(segs: list[SegmentBatch]) -> torch.Tensor:
            masks = [
                s.absorbing if s.absorbing is not None else np.zeros(s.rewards.shape, bool) for s in segs
            ]
            return torch.as_tensor(np.concatenate(masks), dtype=torch.bool)

        return (
            cat([s.obs for s in self.a]),
            cat([s.actions for s in self.a]),
            absorbing(self.a),
            cat([s.obs for s in self.b]),
            cat([s.actions for s in self.b]),
            absorbing(self.b),
            cat(self.labels),
        )

    def episodes(self) -> set[int]:
        return {int(e) for s in self.a + self.b for e in s.episodes}


def predicted_returns(ensemble: RewardEnsemble, seg: SegmentBatch) -> np.ndarray:
    """[M, K] summed predicted rewards of K segments."""
    return ensemble.predict(seg.obs, seg.actions, seg.absorbing).sum(-1)


def reward_moments(ensemble: RewardEnsemble, data: PreferenceData) -> RunningMoments:
    """Mean and std of the ensemble's mean per-step reward over every step of the labelled segments,
    their absorbing padding included: the normalisation of the agent's reward until the next refit.

    Not the rollout's statistics: once the policy rarely fails, the rollout holds only live steps, whose
    predicted rewards the tied comparisons of non-failing segments flatten; their small std would blow
    the absorbing value r̂_abs/(1 − γ) up to thousands and swamp the critic (measured on CartPole with
    100 labels: value errors of 10⁶ and a policy stuck near 150). The labelled segments keep the early
    failures, so the scale stays that of the gap between living and ending."""
    obs_a, act_a, abs_a, obs_b, act_b, abs_b, _ = data.tensors()
    steps = np.concatenate(
        [
            ensemble.predict(obs_a.numpy(), act_a.numpy(), abs_a.numpy()).mean(0).ravel(),
            ensemble.predict(obs_b.numpy(), act_b.numpy(), abs_b.numpy()).mean(0).ravel(),
        ]
    )
    moments = RunningMoments()
    moments.update(steps.tolist())
    return moments


def ask(
    n: int,
    cfg: ControlConfig,
    buffer: SegmentBuffer,
    ensemble: RewardEnsemble,
    trained: bool,
    teacher: SegmentTeacher,
    data: PreferenceData,
    rng: np.random.Generator,
) -> int:
    """Ask the teacher about n pairs from the training episodes; returns how many were asked."""
    disagreement = cfg.query_selection == "disagreement" and trained
    pool = n * cfg.candidates_per_query if disagreement else n
    a = buffer.sample(pool, cfg.segment_length, heldout=False, rng=rng)
    b = buffer.sample(pool, cfg.segment_length, heldout=False, rng=rng)
    if a is None or b is None:
        return 0
    if disagreement:
        scores = np.stack([predicted_returns(ensemble, a), predicted_returns(ensemble, b)], axis=-1)
        chosen = select("disagreement", scores, n, rng)
        a, b = a.take(chosen), b.take(chosen)
    labels = np.array([label_of(p) for p in teacher.compare_segments(a, b)])
    data.add(a, b, labels)
    return n


def heldout_agreement(
    cfg: ControlConfig, buffer: SegmentBuffer, ensemble: RewardEnsemble, rng: np.random.Generator
) -> float:
    a = buffer.sample(cfg.eval_pairs, cfg.segment_length, heldout=True, rng=rng)
    b = buffer.sample(cfg.eval_pairs, cfg.segment_length, heldout=True, rng=rng)
    if a is None or b is None:
        return float("nan")
    return agreement(
        ensemble,
        a.obs,
        a.actions,
        a.absorbing,
        b.obs,
        b.actions,
        b.absorbing,
        a.rewards.sum(-1),
        b.rewards.sum(-1),
    )


@torch.no_grad()
def evaluate_policy(agent: ActorCritic, env_id: str, episodes: int, seed: int) -> list[float]:
    """True returns of the deterministic policy on ``episodes`` fresh episodes (seeds seed, seed+1, …)."""
    import gymnasium as gym

    env = gym.make(env_id)
    returns = []
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            total, done = 0.0, False
            while not done:
                action, _ = agent.act(
                    torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0), deterministic=True
                )
                obs, r, terminated, truncated, _ = env.step(agent.env_actions(action)[0])
                total += float(r)
                done = terminated or truncated
            returns.append(total)
    finally:
        env.close()
    return returns


def plot_returns(out: Path, metrics_path: Path, baseline: str | None) -> Path:
    """returns.png: true episode return against env steps and against labels used."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def read(path: Path) -> list[dict[str, Any]]:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [r for r in rows if isinstance(r.get("true/episode_return"), (int, float))]

    rows = read(metrics_path)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    label = "preference PPO" if any("labels_used" in r for r in rows) else "true-reward PPO"
    left.plot([r["env_steps"] for r in rows], [r["true/episode_return"] for r in rows], label=label)
    if baseline:
        base = read(Path(baseline))
        left.plot(
            [r["env_steps"] for r in base], [r["true/episode_return"] for r in base], label="true-reward PPO"
        )
    left.set_xlabel("environment steps")
    left.set_ylabel("true episode return")
    left.legend()
    left.grid(alpha=0.3)
    with_labels = [r for r in rows if "labels_used" in r]
    if with_labels:  # every iteration as a dot, the mean return at each label count as the line
        xs = [r["labels_used"] for r in with_labels]
        ys = [r["true/episode_return"] for r in with_labels]
        right.scatter(xs, ys, s=8, alpha=0.35, label="an iteration")
        counts = sorted(set(xs))
        means = [float(np.mean([y for x, y in zip(xs, ys) if x == c])) for c in counts]
        right.plot(counts, means, "o-", label="mean at that label count")
        right.legend()
    right.set_xlabel("labels used")
    right.set_ylabel("true episode return")
    right.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "returns.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- the loop


def train(cfg: ControlConfig) -> Path:
    """Run the loop; returns the output directory."""
    from prefloop.config import save_yaml

    check_config(cfg)
    info: EnvInfo = env_info(cfg.env)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, out / "config.yaml")
    preference = cfg.reward == "preference"
    human = preference and cfg.teacher == "human"
    data = PreferenceData()
    teacher: SegmentTeacher | None = None
    asked = 0
    if human:  # before any env step: a bad server, token or campaign fails at once
        from prefloop.control.human import connect

        teacher = connect(
            cfg.feedback_url,
            cfg.feedback_token_file,
            cfg.campaign,
            cfg.annotators,
            cfg.env,
            out,
            cfg.clip_fps,
            cfg.human_wait_s,
            cfg.poll_s,
        )
        for a, b, prefs in teacher.resume():  # labels people gave an earlier run of this output dir
            data.add(a, b, np.array([label_of(p) for p in prefs]))
            asked += len(a)
        if asked:
            print(f"[control] resumed: {asked} pairs asked before, {len(data)} labelled", flush=True)

    envs, obs = make_envs(cfg.env, cfg.num_envs, cfg.seed, render=human)
    agent = ActorCritic(info, cfg.hidden)
    optimizer = torch.optim.Adam(agent.parameters(), lr=cfg.learning_rate, eps=1e-5)
    ensemble = RewardEnsemble(info, cfg.ensemble_size, cfg.reward_hidden)
    reward_opts = [torch.optim.Adam(m.parameters(), lr=cfg.reward_lr) for m in ensemble.members]
    buffer = SegmentBuffer(cfg.num_envs, cfg.segment_buffer, cfg.heldout_fraction, cfg.seed)
    moments = RunningMoments()
    torch_gen = torch.Generator().manual_seed(cfg.seed)
    logger = MetricsLogger(out, tensorboard=cfg.tensorboard, params=vars(cfg))

    per_iter = cfg.num_envs * cfg.rollout_steps
    iterations = math.ceil(cfg.total_steps / per_iter)
    total = iterations * per_iter
    env_steps, trained = 0, False
    episode_return = np.zeros(cfg.num_envs)
    episode_length = np.zeros(cfg.num_envs, dtype=int)
    finished: list[float] = []
    started = time.perf_counter()
    act_width = 1 if info.discrete else info.action_dim

    for it in range(iterations):
        if cfg.anneal_lr:
            optimizer.param_groups[0]["lr"] = cfg.learning_rate * (1.0 - it / iterations)
        # ---- 1. rollout
        T, E = cfg.rollout_steps, cfg.num_envs
        obs_buf = np.zeros((T, E, info.obs_dim), dtype=np.float32)
        act_buf = np.zeros((T, E, act_width), dtype=np.float32)  # the policy's samples (PPO)
        env_act_buf = np.zeros((T, E, act_width), dtype=np.float32)  # as executed: clipped (the predictor)
        logp_buf = np.zeros((T, E), dtype=np.float32)
        val_buf = np.zeros((T, E), dtype=np.float32)
        true_rew = np.zeros((T, E))
        ends = np.zeros((T, E), dtype=np.int64)
        boot_obs = np.zeros((T, E, info.obs_dim), dtype=np.float32)  # s' after each step
        episode_returns_now: list[float] = []
        episode_lengths_now: list[int] = []
        for t in range(T):
            # frames of the observations acted on, drawn only for people (the simulated path renders nothing)
            frames = (
                [encode_frame(f, cfg.clip_width) for f in render_frames(envs, cfg.env)] if human else None
            )
            obs_t = torch.as_tensor(obs, dtype=torch.float32)
            action, logp = agent.act(obs_t)
            with torch.no_grad():
                val_buf[t] = agent.value(obs_t).numpy()
            env_action = agent.env_actions(action)
            next_obs, reward, terminated, truncated, infos = envs.step(env_action)
            obs_buf[t], logp_buf[t], true_rew[t] = obs, logp.numpy(), reward
            act_buf[t] = action.numpy().reshape(E, act_width)
            env_act_buf[t] = env_action.reshape(E, act_width)
            ends[t] = np.where(terminated, TERMINATED, np.where(truncated, TRUNCATED, RUNNING))
            boot_obs[t] = next_obs
            if "_final_obs" in infos:
                for e in np.flatnonzero(infos["_final_obs"]):
                    boot_obs[t, e] = infos["final_obs"][e]
            episode_return += reward
            episode_length += 1
            for e in np.flatnonzero(ends[t] != RUNNING):
                episode_returns_now.append(float(episode_return[e]))
                episode_lengths_now.append(int(episode_length[e]))
                episode_return[e], episode_length[e] = 0.0, 0
            buffer.add(obs, env_act_buf[t], reward, ends[t], frames)
            obs = next_obs
        env_steps += per_iter
        finished.extend(episode_returns_now)
        metrics: dict[str, Any] = {"env_steps": env_steps, "iteration": it}

        # ---- 2. labels due, reward predictor
        if preference:
            if teacher is None:
                first = buffer.sample(max(cfg.eval_pairs, 50), cfg.segment_length, heldout=False, rng=rng)
                mean_return = float(first.rewards.sum(-1).mean()) if first is not None else 1.0
                teacher = SimulatedSegmentTeacher(
                    segment_teacher(cfg.teacher, mean_return, cfg.teacher_beta, cfg.seed + 1)
                )
            last = it == iterations - 1
            point = total if last else 0 if it == 0 else env_steps  # one iteration only: the whole budget
            due = labels_due(point, total, cfg.labels, cfg.initial_label_share, cfg.label_decay)
            # Whole batches as soon as a label is due (the last batch may be partial); the rest of
            # the budget on the last iteration.
            qb = cfg.query_batch
            n = cfg.labels - asked if last else min(cfg.labels - asked, math.ceil((due - asked) / qb) * qb)
            if n > 0:
                asked += ask(n, cfg, buffer, ensemble, trained, teacher, data, rng)
            if len(data) and (n > 0 or not trained):  # new labels, or labels resumed from an earlier run
                if not trained and cfg.reward_obs_norm:
                    ensemble.set_obs_scale(obs_buf)
                metrics.update(
                    ensemble.fit(
                        *data.tensors(),
                        optimizers=reward_opts,
                        epochs=cfg.reward_epochs,
                        batch_size=cfg.reward_batch_size,
                        random_answer=cfg.random_answer,
                        rng=rng,
                    )
                )
                trained = True
                moments = reward_moments(ensemble, data)  # a new predictor: new normalisation
            metrics["labels_used"] = asked
            metrics["labels_answered"] = len(data)
            if trained:
                metrics["reward/heldout_agreement"] = heldout_agreement(cfg, buffer, ensemble, rng)

        # ---- 3. rewards the agent optimises
        with torch.no_grad():
            next_values = agent.value(torch.as_tensor(boot_obs.reshape(T * E, -1))).numpy().reshape(T, E)
        if preference:
            r_hat = ensemble.predict(obs_buf, env_act_buf).mean(0)  # [T, E]
            rewards = (r_hat - moments.mean) / (moments.std + 1e-8)
            r_abs = float(ensemble.absorbing_reward().mean())
            r_absorbing = (r_abs - moments.mean) / (moments.std + 1e-8)
            absorbing = np.full_like(rewards, r_absorbing / (1.0 - cfg.gamma))
            metrics["reward/predicted_absorbing"] = r_abs
            metrics["reward/predicted_mean"] = float(r_hat.mean())
        else:
            rewards, absorbing = true_rew, np.zeros_like(true_rew)
        bootstrap = np.where(ends == TERMINATED, absorbing, next_values)

        # ---- 4. GAE and PPO
        adv, ret = advantages(rewards, val_buf, ends, bootstrap, cfg.gamma, cfg.gae_lambda)
        batch = {
            "obs": torch.as_tensor(obs_buf.reshape(T * E, -1)),
            "actions": torch.as_tensor(act_buf.reshape(T * E, -1)).squeeze(-1)
            if info.discrete
            else torch.as_tensor(act_buf.reshape(T * E, -1)),
            "logps": torch.as_tensor(logp_buf.reshape(-1)),
            "values": torch.as_tensor(val_buf.reshape(-1)),
            "advantages": torch.as_tensor(adv.reshape(-1), dtype=torch.float32),
            "returns": torch.as_tensor(ret.reshape(-1), dtype=torch.float32),
        }
        metrics.update(
            ppo_update(
                agent,
                optimizer,
                batch,
                cfg.ppo_epochs,
                cfg.minibatch_size,
                cfg.clip_eps,
                cfg.vf_coef,
                cfg.ent_coef,
                cfg.max_grad_norm,
                cfg.value_clip,
                torch_gen,
            )
        )
        if cfg.obs_norm:
            agent.update_obs_stats(obs_buf)
        if episode_returns_now:
            metrics["true/episode_return"] = float(np.mean(episode_returns_now))
            metrics["true/episode_length"] = float(np.mean(episode_lengths_now))
        metrics["time_s"] = time.perf_counter() - started
        logger.log(env_steps, metrics)
        recent = float(np.mean(finished[-10:])) if finished else float("nan")
        line = f"[control] steps {env_steps}/{total}  return(last 10 episodes) {recent:.1f}"
        if preference:
            line += f"  labels {asked}/{cfg.labels}"
            if "reward/heldout_agreement" in metrics:
                line += f"  agreement {metrics['reward/heldout_agreement']:.2f}"
        print(line + f"  ({metrics['time_s']:.0f} s)", flush=True)

    envs.close()
    logger.close()
    save_agent(agent, out / "agent")
    if preference:
        save_reward_model(ensemble, out / "reward_model", moments.state_dict())
    eval_returns = evaluate_policy(agent, cfg.env, cfg.eval_episodes, cfg.seed + 10_000)
    summary = {
        "env": cfg.env,
        "reward": cfg.reward,
        "teacher": teacher.name if teacher is not None else None,
        "env_steps": env_steps,
        "labels_used": asked if preference else 0,
        "labels_answered": len(data),
        "eval_return_mean": float(np.mean(eval_returns)) if eval_returns else float("nan"),
        "eval_returns": eval_returns,
        "train_return_last10": float(np.mean(finished[-10:])) if finished else float("nan"),
        "heldout_agreement": heldout_agreement(cfg, buffer, ensemble, rng) if trained else float("nan"),
        "heldout_episodes_queried": len(data.episodes() & {e for e, h in buffer.heldout.items() if h}),
        "time_s": time.perf_counter() - started,
    }
    clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in summary.items()}
    (out / "summary.json").write_text(json.dumps(clean, indent=2))
    plot_returns(out, out / "metrics.jsonl", cfg.baseline)
    return out


def main(argv: list[str], command: str = "control") -> None:
    from prefloop.train.config import run_cli

    run_cli(ControlConfig, argv, command, train)
