"""Remote generation and rewards: every cross-process call has a deadline and a named error.

- Weight sync over HTTP against a real local server: a server that accepts the upload but never
  answers fails with `WeightSyncError` within the timeout; a refused connection too; a working
  one receives exactly the weights.
- Ray (a local cluster with CPU-only actors, the HF backend standing in for vLLM): one online
  step with a rollout actor and a reward actor — generate, score, check the trainer/generator
  log-prob mismatch, update the trainer, push its weights, sample from the new weights — and
  a weight sync to an actor that never returns fails with `WeightSyncError` within its timeout.
"""

import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from prefloop.dist import WeightSyncError, push_weights_http

WEIGHTS = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(4)}


@pytest.fixture()
def weight_server():
    received = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            from safetensors.torch import load

            body = self.rfile.read(int(self.headers["content-length"]))
            if self.path == "/stall":
                time.sleep(30)  # took the upload, never answers (a stuck engine)
                return
            received.update(load(body))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()


def test_weight_sync_that_cannot_complete_fails_named_within_timeout(weight_server):
    url, _ = weight_server
    started = time.monotonic()
    with pytest.raises(WeightSyncError, match=r"rollout-0: weight sync to .*/stall .* within 1 s"):
        push_weights_http(f"{url}/stall", WEIGHTS, timeout_s=1.0, target="rollout-0")
    assert time.monotonic() - started < 5.0


def test_weight_sync_to_a_closed_port_fails_named(weight_server):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    with pytest.raises(WeightSyncError, match="generator: weight sync to .* failed"):
        push_weights_http(f"http://127.0.0.1:{port}/weights", WEIGHTS, timeout_s=2.0)


def test_weight_sync_delivers_the_weights(weight_server):
    url, received = weight_server
    push_weights_http(f"{url}/weights", WEIGHTS, timeout_s=10.0)
    assert received.keys() == WEIGHTS.keys()
    assert all(torch.equal(received[k], WEIGHTS[k]) for k in WEIGHTS)


# --------------------------------------------------------------------------- Ray


def tiny_generator():
    from prefloop.generation.hf import HFGenerator
    from prefloop.models.load import load_causal_lm, load_tokenizer

    return HFGenerator(load_causal_lm("tiny"), load_tokenizer("tiny"), max_new_tokens=6, seed=0)


def length_reward():
    return lambda prompts, completions: [float(len(c)) for c in completions]


class StuckGenerator:
    def update_weights(self, weights):
        time.sleep(3600)  # a sync that never completes (e.g. a collective waiting on a dead peer)


@pytest.fixture
def ray_cluster():
    """A fresh 2-CPU local cluster per test: actors a test leaves behind (the stuck one sleeps for an
    hour) would otherwise hold CPUs the next test's actors wait for, and hang it."""
    ray = pytest.importorskip("ray")
    from prefloop.dist import start_ray

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # actors get this file's factories
    start_ray(num_cpus=2)
    yield ray
    ray.shutdown()


def trainer_token_logps(model, completion) -> torch.Tensor:
    from prefloop.models.logps import response_token_logps

    ids = torch.tensor([completion.prompt_token_ids + completion.token_ids])
    mask = torch.zeros_like(ids)
    mask[0, len(completion.prompt_token_ids) :] = 1
    return response_token_logps(model, ids, torch.ones_like(ids), mask)[0, len(completion.prompt_token_ids) :]


@pytest.mark.slow  # a local Ray cluster takes ~10 s to start and the actors load models: ~30-60 s
def test_online_step_with_ray_rollout_and_reward_actors(ray_cluster):
    from prefloop.dist import RayGenerator, RayReward, ray_workers
    from prefloop.losses import logprob_mismatch
    from prefloop.models.load import load_causal_lm

    generator = RayGenerator(ray_workers(tiny_generator, num_cpus=1), call_timeout_s=120, sync_timeout_s=60)
    reward = RayReward(ray_workers(length_reward, num_cpus=0.5), call_timeout_s=60)
    trainer = load_causal_lm("tiny")
    prompts = ["Say hi.", "Name a color."]

    completions = generator.generate(prompts, num_responses=2, seed=1)
    assert [c.prompt_index for c in completions] == [0, 0, 1, 1]
    scores = reward(
        prompts=[prompts[c.prompt_index] for c in completions], completions=[c.text for c in completions]
    )
    assert scores == [float(len(c.text)) for c in completions]

    def mismatch(model):
        sampled = torch.nn.utils.rnn.pad_sequence([torch.tensor(c.token_logprobs) for c in completions], True)
        trained = torch.nn.utils.rnn.pad_sequence([trainer_token_logps(model, c) for c in completions], True)
        mask = torch.nn.utils.rnn.pad_sequence([torch.ones(len(c.token_ids)) for c in completions], True)
        return logprob_mismatch(sampled, trained.detach(), mask)

    assert mismatch(trainer)["logprobs/mismatch_max"] < 1e-4  # same weights, same fp32 kernels

    # one policy-gradient step on the trainer (REINFORCE with the mean score as baseline) ...
    optimizer = torch.optim.SGD(trainer.parameters(), lr=1.0)
    baseline = sum(scores) / len(scores)
    loss = -sum((s - baseline) * trainer_token_logps(trainer, c).sum() for s, c in zip(scores, completions))
    loss.backward()
    optimizer.step()
    assert mismatch(trainer)["logprobs/mismatch_max"] > 1e-3  # the generator is now one step behind
    # ... then the weight sync: the actor samples from the new weights
    generator.update_weights(trainer)
    completions = generator.generate(prompts, num_responses=2, seed=1)
    assert mismatch(trainer)["logprobs/mismatch_max"] < 1e-4


@pytest.mark.slow
def test_ray_weight_sync_that_never_returns_fails_named_within_timeout(ray_cluster):
    from prefloop.dist import RayGenerator, ray_workers

    stuck = RayGenerator(ray_workers(StuckGenerator, num_cpus=0.5), sync_timeout_s=2.0)
    started = time.monotonic()
    with pytest.raises(
        WeightSyncError, match=r"rollout actor 0: update_weights \(weight sync\) did not return within 2 s"
    ):
        stuck.update_weights(WEIGHTS)
    assert time.monotonic() - started < 10.0


@pytest.mark.slow
def test_grpo_with_ray_actors_syncs_weights_every_step(ray_cluster, tmp_path):
    """`prefloop grpo --ray`: rollout and reward actors; after each update the actor samples from the
    trainer's new weights, so the trainer/generator log-prob mismatch stays at float noise (and
    the truncated importance weights, on by default here, at 1)."""
    from pathlib import Path

    from prefloop.cli import main
    from prefloop.train.logs import read_metrics

    repo = Path(__file__).resolve().parents[2]
    out = tmp_path / "grpo-ray"
    main(
        [
            "grpo",
            "--model",
            "tiny",
            "--data",
            str(repo / "examples" / "data" / "prompts.jsonl"),
            "--reward",
            f"{repo / 'tests' / 'online' / 'toy_rewards.py'}:frac_e",
            "--output-dir",
            str(out),
            "--max-new-tokens",
            "4",
            "--prompts-per-step",
            "2",
            "--max-steps",
            "3",
            "--learning-rate",
            "1e-2",
            "--report-to-tensorboard",
            "no",
            "--ray",
            "--sync-timeout-s",
            "60",
        ]
    )
    rows = [r for r in read_metrics(out) if "learning_rate" in r]
    assert [r["step"] for r in rows] == [1, 2, 3]
    # steps 2 and 3 sample from weights pushed after steps 1 and 2: no stale generator
    assert all(r["logprobs/mismatch_max"] < 1e-4 for r in rows)
    # truncated importance sampling is on by default with --ray (the generator is not the trainer)
    assert all(r["is/ratio_mean"] == pytest.approx(1.0, abs=1e-3) for r in rows)
    assert all(r["is/capped_frac"] == 0.0 for r in rows)
