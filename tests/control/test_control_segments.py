"""Segments (padding, cut episodes), the held-out split, the label schedule, teachers on segments, GAE layout."""

import math

import numpy as np
import pytest

from prefloop.control.loop import advantages, episode_pieces
from prefloop.control.segments import (
    RUNNING,
    TERMINATED,
    TRUNCATED,
    SegmentBatch,
    SegmentBuffer,
    label_preferences,
    labels_due,
    segment_teacher,
)


def fill(buffer: SegmentBuffer, episodes: list[tuple[int, int]], env: int = 0, num_envs: int = 1) -> None:
    """Adds episodes (length, end kind) to one env; obs = [global step, env], reward = global step + 1."""
    step = 0
    for length, kind in episodes:
        for i in range(length):
            end = kind if i == length - 1 else RUNNING
            obs = np.array([[step, e] for e in range(num_envs)], dtype=np.float32)
            buffer.add(obs, np.zeros((num_envs, 1)), np.full(num_envs, step + 1.0), np.full(num_envs, end))
            step += 1


def test_short_episodes_are_padded_cut_ones_shifted_back():
    buf = SegmentBuffer(num_envs=1, capacity=100, heldout_fraction=0.0, seed=0)
    # steps 0-2: terminated episode; 3-4: time-limit episode of 2 steps; 5-14: still running
    fill(buf, [(3, TERMINATED), (2, TRUNCATED), (10, RUNNING)])
    seen = {}
    segs = buf.sample(400, 5, heldout=False, rng=np.random.default_rng(0))
    for obs, rew in zip(segs.obs[:, :, 0].astype(int), segs.rewards):
        seen[tuple(obs)] = tuple(rew)
    # terminated: the last step repeats with true reward 0 (absorbing state)
    assert seen[(0, 1, 2, 2, 2)] == (1, 2, 3, 0, 0)
    assert seen[(2, 2, 2, 2, 2)] == (3, 0, 0, 0, 0)
    # a 2-step episode cut by the time limit: its last step repeats with its own reward
    assert seen[(3, 4, 4, 4, 4)] == (4, 5, 5, 5, 5)
    # the running episode: starts near its end move back, so every segment is 5 real steps
    running = [o for o in seen if o[0] >= 5]
    assert running and all(list(o) == list(range(o[0], o[0] + 5)) for o in running)
    assert max(o[0] for o in running) == 10  # start 14 → 10
    assert (
        len(seen) == 3 + 1 + 6
    )  # starts 0-2 | 3-4 (both → 3) | 5-14 (→ 5-10): every segment the rules allow
    assert segs.obs.shape == (400, 5, 2) and segs.rewards.shape == (400, 5)
    # absorbing = exactly the padding of the terminated episode (not the cut episode's repeats)
    marks = {tuple(o): tuple(a) for o, a in zip(segs.obs[:, :, 0].astype(int), segs.absorbing.astype(int))}
    assert marks[(0, 1, 2, 2, 2)] == (0, 0, 0, 1, 1)
    assert marks[(2, 2, 2, 2, 2)] == (0, 1, 1, 1, 1)
    assert marks[(3, 4, 4, 4, 4)] == (0, 0, 0, 0, 0)
    assert not segs.absorbing[[o[0] >= 5 for o in segs.obs[:, :, 0].astype(int)]].any()


def test_segments_longer_than_the_buffer_and_empty_buffers_do_not_crash():
    buf = SegmentBuffer(num_envs=1, capacity=3, heldout_fraction=0.0, seed=0)
    assert buf.sample(4, 5, heldout=False, rng=np.random.default_rng(0)) is None
    fill(buf, [(10, RUNNING)])  # only steps 7, 8, 9 are kept
    segs = buf.sample(4, 25, heldout=False, rng=np.random.default_rng(0))
    assert segs.obs.shape == (4, 25, 2)
    assert all(list(o[:3]) == [7, 8, 9] and set(o[3:]) == {9} for o in segs.obs[:, :, 0].astype(int))


def test_heldout_split_is_disjoint_by_episode():
    buf = SegmentBuffer(num_envs=2, capacity=5000, heldout_fraction=0.3, seed=1)
    rng = np.random.default_rng(0)
    for _ in range(300):  # episodes of random lengths in both envs
        ends = rng.choice([RUNNING, RUNNING, RUNNING, TERMINATED, TRUNCATED], size=2)
        buf.add(rng.normal(size=(2, 3)), np.zeros((2, 1)), np.ones(2), ends)
    held = {e for e, h in buf.heldout.items() if h}
    train = {e for e, h in buf.heldout.items() if not h}
    assert held and train and not held & train
    a = buf.sample(500, 4, heldout=False, rng=rng)
    b = buf.sample(500, 4, heldout=True, rng=rng)
    assert set(a.episodes.tolist()) <= train
    assert set(b.episodes.tolist()) <= held
    assert not set(a.episodes.tolist()) & set(b.episodes.tolist())


def test_label_schedule_by_hand():
    # budget 300, a quarter first: 75 at step 0; τ = 0.25 · 1000 = 250;
    # at t = 250: 75 + int(225 · ln 2 / ln 5) = 75 + int(96.9) = 171
    assert labels_due(0, 1000, 300, 0.25, 0.25) == 75
    assert math.log(2) / math.log(5) * 225 == pytest.approx(96.9, abs=0.05)
    assert labels_due(250, 1000, 300, 0.25, 0.25) == 171
    assert labels_due(1000, 1000, 300, 0.25, 0.25) == 300
    due = [labels_due(t, 1000, 300, 0.25, 0.25) for t in range(0, 1001, 50)]
    assert due == sorted(due)
    gaps = np.diff(due)
    assert gaps[0] > gaps[-1]  # a decaying rate


def segs(*reward_rows: list[float]) -> SegmentBatch:
    r = np.array(reward_rows, dtype=float)
    k, length = r.shape
    return SegmentBatch(np.zeros((k, length, 1)), np.zeros((k, length, 1)), r, np.arange(k))


def test_teachers_on_segments():
    a, b = segs([1.0, 0.0], [1.0, 1.0]), segs([0.0, 1.0], [1.0, 1.0])
    # myopic γ = 0.9: R = Σ γ^(T−t) r_t; a = 0.9·1 + 0 = 0.9 < b = 0.9·0 + 1 = 1 → b
    myopic = segment_teacher("myopic", 1.0, None, seed=0)
    assert myopic.segment_return([1.0, 0.0]) == pytest.approx(0.9)
    _, labels = label_preferences(myopic, a, b)
    assert labels[0] == 0.0 and labels[1] == 0.5  # equal returns: a tie for a noiseless teacher
    oracle = segment_teacher("oracle", 1.0, None, seed=0)
    _, labels = label_preferences(oracle, a, b)
    assert labels[0] == 0.5 and labels[1] == 0.5  # both pairs sum to the same return
    # skip with negative returns (Pendulum): δ_skip = mean − 0.9·|mean| = −100 − 90 = −190;
    # pair 1: −200 vs −195, both below → skipped; pair 2: −80 vs −100 → a
    skip = segment_teacher("skip", -100.0, None, seed=0)
    assert skip.skip_threshold == pytest.approx(-190.0)
    _, labels = label_preferences(
        skip, segs([-100.0, -100.0], [-40.0, -40.0]), segs([-95.0, -100.0], [-60.0, -40.0])
    )
    assert math.isnan(labels[0]) and labels[1] == 1.0
    # equal: |ΔR| < 0.1 · |mean| = 1
    equal = segment_teacher("equal", 10.0, None, seed=0)
    _, labels = label_preferences(equal, segs([5.0], [5.0]), segs([5.5], [7.0]))
    assert labels.tolist() == [0.5, 0.0]
    with pytest.raises(ValueError, match="unknown teacher"):
        segment_teacher("nope", 1.0, None, seed=0)


def test_gae_over_episode_pieces_by_hand():
    # one env, 3 steps: an episode terminates at step 1, a new one runs at step 2 (cut by the rollout)
    ends = np.array([[RUNNING], [TERMINATED], [RUNNING]])
    assert episode_pieces(ends) == [(0, 0, 1), (0, 2, 2)]
    rewards = np.ones((3, 1))
    values = np.full((3, 1), 0.5)
    bootstrap = np.array([[9.9], [2.0], [0.4]])  # step 0's is unused (not a piece's end)
    adv, ret = advantages(rewards, values, ends, bootstrap, gamma=0.5, lam=1.0)
    # step 1 ends the first piece: r = 1 + γ·2 = 2, δ = 2 − 0.5 = 1.5, A = 1.5
    # step 0: δ = 1 + 0.5·0.5 − 0.5 = 0.75, A = 0.75 + 0.5·1.5 = 1.5
    # step 2: r = 1 + 0.5·0.4 = 1.2, δ = 0.7, A = 0.7;  returns = A + V
    assert adv[:, 0].tolist() == pytest.approx([1.5, 1.5, 0.7])
    assert ret[:, 0].tolist() == pytest.approx([2.0, 2.0, 1.2])


def test_reward_model_input_standardisation_is_fixed_once():
    import torch

    from prefloop.control.envs import EnvInfo
    from prefloop.control.reward_model import RewardEnsemble

    model = RewardEnsemble(EnvInfo("x", 2, True, 2), members=2)
    obs = np.array([[0.0, 10.0], [0.2, 30.0]], dtype=np.float32)
    model.set_obs_scale(obs)
    # mean (0.1, 20), sample std (0.1414, 14.14): both rows standardise to (∓0.7071, ∓0.7071)
    feats = model.features(torch.as_tensor(obs), torch.tensor([[1.0], [0.0]]))
    assert feats[:, :2].flatten().tolist() == pytest.approx(
        [-0.7071068, -0.7071068, 0.7071068, 0.7071068], abs=1e-5
    )
    assert feats[:, 2:4].tolist() == [[0.0, 1.0], [1.0, 0.0]]  # one-hot actions
    assert feats[:, 4].tolist() == [0.0, 0.0]  # not absorbing
    assert set(model.state_dict()) >= {"obs_mean", "obs_std"}  # saved with the model


def test_the_absorbing_state_is_one_input_whatever_the_last_observation():
    import torch

    from prefloop.control.envs import EnvInfo
    from prefloop.control.reward_model import RewardEnsemble

    torch.manual_seed(0)
    model = RewardEnsemble(EnvInfo("x", 2, True, 2), members=2)
    obs = torch.tensor([[[0.1, 5.0], [3.0, -2.0]]])  # [1, 2 steps, d]: different last observations
    actions = torch.tensor([[[1.0], [0.0]]])
    feats = model.features(obs, actions, torch.tensor([[False, True]]))
    assert feats[0, 1].tolist() == [0.0, 0.0, 0.0, 0.0, 1.0]  # zero obs and action features, flag 1
    assert feats[0, 0, 4].item() == 0.0 and feats[0, 0, :2].tolist() == pytest.approx([0.1, 5.0])
    # every absorbing step, after any observation, scores r̂_abs of `absorbing_reward`
    both = model.predict(obs.numpy()[0], actions.numpy()[0], np.array([True, True]))  # [M, 2]
    assert both[:, 0] == pytest.approx(both[:, 1]) and both[:, 0] == pytest.approx(model.absorbing_reward())
    plain = model.predict(obs.numpy()[0], actions.numpy()[0])  # no mask: nothing is absorbing
    assert not np.allclose(plain[:, 0], plain[:, 1])


def test_reward_normalisation_spans_the_labelled_steps_absorbing_padding_included():
    import torch

    from prefloop.control.envs import EnvInfo
    from prefloop.control.loop import PreferenceData, reward_moments
    from prefloop.control.reward_model import RewardEnsemble

    torch.manual_seed(0)
    model = RewardEnsemble(EnvInfo("x", 2, True, 2), members=2)
    buf = SegmentBuffer(num_envs=1, capacity=100, heldout_fraction=0.0, seed=0)
    fill(buf, [(2, TERMINATED), (6, RUNNING)])
    rng = np.random.default_rng(0)
    a, b = buf.sample(6, 4, heldout=False, rng=rng), buf.sample(6, 4, heldout=False, rng=rng)
    assert a.absorbing.any() or b.absorbing.any()  # starts 0-1 pad the 2-step terminated episode
    data = PreferenceData()
    data.add(a, b, np.array([1.0, 0.0, 0.5, math.nan, 1.0, 0.0]))  # the NaN (a skip) is dropped
    # expected: the ensemble-mean reward of each kept step, absorbing steps scored as r̂_abs
    keep = [0, 1, 2, 4, 5]
    r_abs = float(model.absorbing_reward().mean())
    per_step = []
    for seg in (a, b):
        live = model.predict(seg.obs[keep], seg.actions[keep]).mean(0)
        per_step.append(np.where(seg.absorbing[keep], r_abs, live).ravel())
    values = np.concatenate(per_step)
    moments = reward_moments(model, data)
    assert moments.count == 2 * 5 * 4
    assert moments.mean == pytest.approx(values.mean(), abs=1e-6)
    assert moments.std == pytest.approx(values.std(ddof=1), abs=1e-6)


def test_agent_observation_statistics_are_exact_over_batches_and_leave_raw_input_until_set():
    import torch

    from prefloop.control.agent import ActorCritic
    from prefloop.control.envs import EnvInfo

    agent = ActorCritic(EnvInfo("x", 2, True, 2))
    obs = torch.tensor([[1.0, -4.0], [3.0, 0.0], [5.0, 4.0], [7.0, 100.0]])
    assert torch.equal(agent.normalize(obs), obs)  # no statistics yet: the raw observation
    agent.update_obs_stats(obs[:1])
    agent.update_obs_stats(obs[1:3])
    agent.update_obs_stats(obs[3:])
    # column 0: mean 4, population variance (9 + 1 + 1 + 9) / 4 = 5;
    # column 1: mean 25, deviations -29, -25, -21, 75: (841 + 625 + 441 + 5625) / 4 = 1883
    assert agent.obs_mean.tolist() == pytest.approx([4.0, 25.0])
    assert agent.obs_var.tolist() == pytest.approx([5.0, 1883.0])
    assert agent.obs_count.item() == 4
    out = agent.normalize(torch.tensor([[4.0 + 2 * math.sqrt(5.0), 25.0], [1e6, -1e6]]))
    assert out[0].tolist() == pytest.approx([2.0, 0.0], abs=1e-6)
    assert out[1].tolist() == [10.0, -10.0]  # clipped
    assert {"obs_mean", "obs_var", "obs_count"} <= set(agent.state_dict())  # saved with the agent
