"""Trajectory segments, their pairs, simulated teachers over true rewards, and the label schedule.

Segments (Christiano et al. 2017 §2.1; B-Pref) are L consecutive steps (o_t, a_t) of one episode.
The buffer keeps each environment's recent steps as one stream; a segment starts at a step drawn
uniformly from the stream. When the episode has fewer than L steps left:

- it *terminated* (the pole fell): the segment is padded with the absorbing state the episode is
  in after termination, where the environment pays nothing (true reward 0). The padding steps
  repeat the last step's observation and action (what a clip shows) and are marked in
  ``absorbing``; the reward predictor reads them as its single absorbing-state input
  (`reward_model.py`), so it learns what ending an episode is worth, and the agent's GAE
  bootstraps a terminated episode with that same absorbing value (`prefloop.control.loop`).
- it was cut by the time limit or by the end of the buffer: the start is moved back inside the
  episode so the segment ends on its last known step; if the whole episode piece is still shorter
  than L, the last step is repeated with its own true reward (the episode had not ended).

So every segment has exactly L steps, for any episode length and any buffer size ≥ 1 step.

Episodes are assigned at random (``heldout_fraction``) to a held-out set used only to measure the
reward predictor's agreement with true-reward preferences; queries never use them.

Teachers: the loop asks a `SegmentTeacher` (`compare_segments(a, b)` -> one `Preference` per pair,
the answer type of every prefloop teacher); `label_of` turns an answer into the predictor's label
(a 1, b 0, tie ½, skip NaN = dropped). Two implementations: `SimulatedSegmentTeacher`, the B-Pref
SimTeachers of `prefloop.teachers.simulated` (one code path with the text teachers) over each
segment's per-step true rewards (`SimulatedTeacher.segment_return`), and people judging clips of
the segments in the feedback server (`prefloop.control.human.ClipTeacher`).

When frames are recorded (only for the human teacher: `SegmentBuffer.add(..., frames=...)`), each
segment also carries its steps' frames (encoded images) and which steps are absorbing padding.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from prefloop.teachers.base import Preference
from prefloop.teachers.simulated import BPREF_KINDS, SimulatedTeacher, bpref_teacher

__all__ = [
    "RUNNING",
    "TERMINATED",
    "TRUNCATED",
    "SegmentBatch",
    "SegmentBuffer",
    "SegmentTeacher",
    "SimulatedSegmentTeacher",
    "label_of",
    "label_preferences",
    "labels_due",
    "segment_teacher",
]

RUNNING, TERMINATED, TRUNCATED = 0, 1, 2


@dataclass
class SegmentBatch:
    """K segments of L steps: obs [K, L, d], actions [K, L, a], true rewards [K, L], episode ids [K],
    absorbing [K, L] (True on the steps that pad a terminated episode: the absorbing state); when the
    buffer recorded frames: frames[k][t] (encoded images)."""

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    episodes: np.ndarray
    frames: list[list[bytes]] | None = None
    absorbing: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.episodes)

    def take(self, idx: Sequence[int] | np.ndarray) -> SegmentBatch:
        i = np.asarray(idx, dtype=int)
        return SegmentBatch(
            self.obs[i],
            self.actions[i],
            self.rewards[i],
            self.episodes[i],
            None if self.frames is None else [self.frames[j] for j in i],
            None if self.absorbing is None else self.absorbing[i],
        )

    def without_frames(self) -> SegmentBatch:
        return SegmentBatch(self.obs, self.actions, self.rewards, self.episodes, absorbing=self.absorbing)


class SegmentBuffer:
    """The recent steps of each environment (``capacity`` per env), with episode ids and ends.

    ``add`` takes one step of every env: obs [E, d] (the observation acted on), actions [E, a],
    true rewards [E], ends [E] (RUNNING / TERMINATED / TRUNCATED after this step), and optionally
    frames [E] (each env's image of the observation acted on, encoded: `prefloop.control.clips`)."""

    def __init__(self, num_envs: int, capacity: int, heldout_fraction: float, seed: int):
        if capacity < 1:
            raise ValueError(f"segment buffer capacity must be >= 1 step per env, got {capacity}")
        if not 0.0 <= heldout_fraction < 1.0:
            raise ValueError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}")
        self.capacity = capacity
        self.heldout_fraction = heldout_fraction
        self.rng = np.random.default_rng(seed)
        self.heldout: dict[int, bool] = {}
        self._next_episode = 0
        self.current = [self._new_episode() for _ in range(num_envs)]
        self.streams: list[deque[tuple[np.ndarray, np.ndarray, float, int, int, bytes | None]]] = [
            deque(maxlen=capacity) for _ in range(num_envs)
        ]

    def _new_episode(self) -> int:
        ep = self._next_episode
        self._next_episode += 1
        self.heldout[ep] = bool(self.rng.random() < self.heldout_fraction)
        return ep

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        ends: np.ndarray,
        frames: Sequence[bytes] | None = None,
    ) -> None:
        for e, stream in enumerate(self.streams):
            frame = None if frames is None else frames[e]
            stream.append((obs[e], actions[e], float(rewards[e]), self.current[e], int(ends[e]), frame))
            if ends[e] != RUNNING:
                self.current[e] = self._new_episode()

    def num_steps(self) -> int:
        return sum(len(s) for s in self.streams)

    def _flat(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        steps = [step for stream in self.streams for step in stream]
        obs = np.stack([s[0] for s in steps]).astype(np.float32)
        act = np.stack([np.atleast_1d(s[1]) for s in steps]).astype(np.float32)
        rew = np.array([s[2] for s in steps], dtype=np.float64)
        ep = np.array([s[3] for s in steps], dtype=np.int64)
        end = np.array([s[4] for s in steps], dtype=np.int64)
        return obs, act, rew, ep, end

    def sample(self, n: int, length: int, heldout: bool, rng: np.random.Generator) -> SegmentBatch | None:
        """n segments of ``length`` steps from training (or held-out) episodes; None when there are none."""
        if length < 1:
            raise ValueError(f"segment length must be >= 1, got {length}")
        if self.num_steps() == 0:
            return None
        obs, act, rew, ep, end = self._flat()
        candidates = np.flatnonzero(np.array([self.heldout[int(e)] == heldout for e in ep]))
        if len(candidates) == 0:
            return None
        # Each step's episode piece in the flat arrays: [first, last] (ids are contiguous and unique).
        change = np.flatnonzero(np.diff(ep)) + 1
        firsts = np.concatenate([[0], change])
        lasts = np.concatenate([change - 1, [len(ep) - 1]])
        piece = np.repeat(np.arange(len(firsts)), np.diff(np.concatenate([firsts, [len(ep)]])))
        starts = rng.choice(candidates, size=n, replace=True)
        idx = np.empty((n, length), dtype=np.int64)
        absorbing = np.zeros((n, length), dtype=bool)
        for k, s in enumerate(starts):
            first, last = firsts[piece[s]], lasts[piece[s]]
            if end[last] != TERMINATED and last - s + 1 < length:
                s = max(first, last - length + 1)  # cut episode: end the segment on its last known step
            span = np.arange(s, min(s + length, last + 1))
            pad = length - len(span)
            idx[k] = np.concatenate([span, np.full(pad, last)])
            if pad and end[last] == TERMINATED:
                absorbing[k, len(span) :] = True
        rewards = np.where(absorbing, 0.0, rew[idx])
        frames = None
        if all(step[5] is not None for stream in self.streams for step in stream):
            flat_frames = [step[5] for stream in self.streams for step in stream]
            frames = [[flat_frames[i] for i in row] for row in idx]
        return SegmentBatch(obs[idx], act[idx], rewards, ep[idx[:, 0]], frames, absorbing)


def segment_teacher(kind: str, mean_return: float, beta: float | None, seed: int) -> SimulatedTeacher:
    """A B-Pref teacher for segments; thresholds scale with the mean true segment return.

    δ_equal = 0.1·|mean|; δ_skip = mean − 0.9·|mean|, which is B-Pref's 0.1·mean for positive
    returns and stays below the mean for negative ones (Pendulum), where 0.1·mean would skip
    every query. Exactly equal returns are a tie for the noiseless teachers (`compare_returns`)."""
    if kind not in BPREF_KINDS:
        raise ValueError(f"unknown teacher {kind!r}; known: {list(BPREF_KINDS)}")
    teacher = bpref_teacher(kind, None, mean_return=abs(mean_return), beta=beta, seed=seed)
    if kind == "skip":
        teacher.skip_threshold = mean_return - 0.9 * abs(mean_return)
    return teacher


LABELS = {"a": 1.0, "b": 0.0, "tie": 0.5, "skip": math.nan}


def label_of(pref: Preference) -> float:
    """The predictor's label of an answer: 1 = a preferred, 0 = b, ½ = a tie ("equal"), NaN = no label
    (a skip, a person's "can't tell"): the pair is dropped."""
    return LABELS[pref.which]


class SegmentTeacher(Protocol):
    """Compares trajectory segments: one `Preference` on each pair (a_i, b_i)."""

    name: str

    def compare_segments(self, a: SegmentBatch, b: SegmentBatch) -> list[Preference]: ...


class SimulatedSegmentTeacher:
    """A B-Pref SimTeacher on segments (their per-step true rewards): a `SegmentTeacher`."""

    def __init__(self, teacher: SimulatedTeacher) -> None:
        self.teacher = teacher
        self.name = teacher.name

    def compare_segments(self, a: SegmentBatch, b: SegmentBatch) -> list[Preference]:
        return label_preferences(self.teacher, a, b)[0]


def label_preferences(
    teacher: SimulatedTeacher, a: SegmentBatch, b: SegmentBatch
) -> tuple[list[Preference], np.ndarray]:
    """The teacher's answers on pairs (a_i, b_i) and labels: 1 = a, 0 = b, ½ = tie, NaN = skipped."""
    prefs = []
    for ra, rb in zip(a.rewards, b.rewards):
        r_a, r_b = teacher.segment_return(ra), teacher.segment_return(rb)
        prefs.append(
            teacher.compare_returns(
                r_a, r_b, {"annotator": teacher.name, "return_a": r_a, "return_b": r_b}, exact_tie=True
            )
        )
    return prefs, np.array([label_of(p) for p in prefs])


def labels_due(env_steps: int, total_steps: int, budget: int, initial_share: float, decay: float) -> int:
    """How many labels should have been asked for after ``env_steps`` of ``total_steps``.

    A share ``initial_share`` of the budget at step 0 (from the initial policy); the rest at a rate
    ∝ 1 / (1 + t/τ), τ = ``decay``·total_steps (Christiano et al.: 2·10⁶/(T + 2·10⁶)), so the
    cumulative count is n0 + (budget − n0)·log(1 + t/τ) / log(1 + total/τ); all of it by the end."""
    n0 = round(initial_share * budget)
    if env_steps >= total_steps:
        return budget
    tau = max(decay * total_steps, 1e-9)
    frac = math.log1p(env_steps / tau) / math.log1p(total_steps / tau)
    return min(budget, n0 + int((budget - n0) * frac))
