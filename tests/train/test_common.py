"""Shared loop helpers: loss normalisation across accumulation, data order, schedules, log-probs."""

import math

import pytest
import torch

from prefloop.train.schedule import (
    StepSchedule,
    accumulation_scale,
    lr_lambda,
    split_eval,
    weighted_metrics,
)


def test_accumulation_scale_gives_full_batch_mean():
    # Token losses of one optimizer step, split into two micro-batches of 3 and 1 tokens.
    micro = [[1.0, 2.0, 3.0], [10.0]]
    total = 4
    # Full-batch token mean: (1 + 2 + 3 + 10) / 4 = 4.0
    accumulated = sum(accumulation_scale(len(m), total) * (sum(m) / len(m)) for m in micro)
    assert accumulated == pytest.approx(4.0)
    # The naive mean of micro-batch means would be (2 + 10) / 2 = 6.0: the function must not do that.
    assert accumulation_scale(3, 4) == pytest.approx(0.75)
    assert accumulation_scale(1, 4) == pytest.approx(0.25)
    assert accumulation_scale(0, 0) == 0.0


def test_accumulation_scale_gradients_match_full_batch():
    w = torch.tensor([0.5, -1.0], requires_grad=True)
    x = torch.tensor([[1.0, 2.0], [3.0, 1.0], [0.0, 1.0], [2.0, 2.0], [1.0, 0.0]])
    full = (x @ w).pow(2).mean()
    (g_full,) = torch.autograd.grad(full, w)
    g = torch.zeros(2)
    for part in (x[:2], x[2:]):  # uneven micro-batches: 2 and 3 rows
        loss = (part @ w).pow(2).mean() * accumulation_scale(len(part), len(x))
        g += torch.autograd.grad(loss, w)[0]
    assert torch.allclose(g, g_full)


def test_weighted_metrics():
    out = weighted_metrics([({"loss": 1.0, "acc": 0.0}, 3), ({"loss": 5.0}, 1)])
    assert out["loss"] == pytest.approx((3 * 1.0 + 5.0) / 4)  # 2.0
    assert out["acc"] == 0.0


def test_step_schedule_same_records_for_any_batch_split():
    a = StepSchedule(10, batch_size=4, grad_accum=1, seed=3, epochs=2)
    b = StepSchedule(10, batch_size=2, grad_accum=2, seed=3, epochs=2)
    assert a.steps_per_epoch == b.steps_per_epoch == 3
    assert a.total_steps == 6
    for step in range(a.total_steps):
        flat_a = [i for m in a.micro_batches(step) for i in m]
        flat_b = [i for m in b.micro_batches(step) for i in m]
        assert flat_a == flat_b
    assert [len(m) for m in b.micro_batches(2)] == [2]  # last step of an epoch: 10 - 8 = 2 records
    epoch0 = sorted(i for s in range(3) for m in a.micro_batches(s) for i in m)
    assert epoch0 == list(range(10))  # every record once per epoch
    assert a.micro_batches(0) != a.micro_batches(3)  # a new permutation each epoch


def test_step_schedule_is_a_pure_function_of_the_step():
    a = StepSchedule(7, batch_size=2, grad_accum=1, seed=0, max_steps=9)
    seen = [a.micro_batches(s) for s in range(9)]
    resumed = StepSchedule(7, batch_size=2, grad_accum=1, seed=0, max_steps=9)
    assert [resumed.micro_batches(s) for s in range(5, 9)] == seen[5:]
    assert a.total_steps == 9


def test_lr_lambda_by_hand():
    lin = lr_lambda("linear", warmup_steps=2, total_steps=6)
    assert [lin(s) for s in range(6)] == pytest.approx([0.5, 1.0, 1.0, 0.75, 0.5, 0.25])
    cos = lr_lambda("cosine", warmup_steps=0, total_steps=4)
    assert cos(2) == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))
    assert lr_lambda("constant", 0, 10)(9) == 1.0


def test_split_eval_is_seeded_and_disjoint():
    tr, ev = split_eval(20, 0.1, seed=1)
    assert len(ev) == 2 and len(tr) == 18 and not set(tr) & set(ev)
    assert split_eval(20, 0.1, seed=1) == (tr, ev)
    assert split_eval(20, 0.0, seed=1) == (list(range(20)), [])


def test_response_logps_match_full_logits(tiny_causal):
    """Head-only-at-response-positions log-probs (chunked) equal the full-logits computation."""
    from prefloop.losses import sequence_logps
    from prefloop.models.logps import response_logps

    torch.manual_seed(0)
    ids = torch.randint(0, 1000, (3, 9))
    attn = torch.ones(3, 9, dtype=torch.long)
    attn[2, 7:] = 0
    resp = torch.zeros(3, 9, dtype=torch.long)
    resp[0, 4:] = 1
    resp[1, 2:6] = 1
    resp[2, 5:7] = 1
    logits = tiny_causal(input_ids=ids, attention_mask=attn).logits
    expected = sequence_logps(logits, ids, resp)
    (g_expected,) = torch.autograd.grad(expected.sum(), tiny_causal.lm_head.weight)
    got, counts = response_logps(tiny_causal, ids, attn, resp, chunk_tokens=3)
    (g_got,) = torch.autograd.grad(got.sum(), tiny_causal.lm_head.weight)
    assert counts.tolist() == [5, 4, 2]
    assert torch.allclose(got, expected, atol=1e-4)
    assert torch.allclose(g_got, g_expected, rtol=1e-4, atol=1e-4)
    mean, _ = response_logps(tiny_causal, ids, attn, resp, average=True)
    assert torch.allclose(mean, expected / counts, atol=1e-4)


def test_checkpoints_roundtrip_and_prune(tmp_path):
    from prefloop.train.checkpoint import (
        list_checkpoints,
        load_checkpoint,
        save_checkpoint,
        trainable_state_dict,
    )
    from prefloop.train.optim import build_optimizer

    model = torch.nn.Linear(3, 2)
    opt = build_optimizer(model, 0.1, 0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda("linear", 0, 10))
    for step in (1, 2, 3):
        model(torch.ones(1, 3)).sum().backward()
        opt.step()
        sched.step()
        opt.zero_grad()
        save_checkpoint(tmp_path, step, trainable_state_dict(model), opt.state_dict(), sched, limit=2)
    draw_after_save = torch.rand(1)  # what the RNG gives right after the last checkpoint
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-2", "step-3"]  # oldest pruned
    saved = {k: v.clone() for k, v in model.state_dict().items()}

    fresh = torch.nn.Linear(3, 2)
    opt2 = build_optimizer(fresh, 0.1, 0.0)
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, lr_lambda("linear", 0, 10))
    torch.manual_seed(123)
    torch.rand(1)  # move the RNG; loading must restore the state saved with the checkpoint
    state = load_checkpoint(list_checkpoints(tmp_path)[-1], fresh, opt2, sched2)
    assert state["step"] == 3
    assert all(torch.equal(fresh.state_dict()[k], saved[k]) for k in saved)
    assert sched2.last_epoch == 3 and sched2.get_last_lr() == sched.get_last_lr()
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    assert torch.equal(torch.rand(1), draw_after_save)  # RNG restored to the saved point


def test_save_final_drops_the_optimizer_state_and_writes_a_loadable_model(tmp_path, tiny_causal):
    """After the last step nothing needs AdamW's moments: they are freed before final/ is written."""
    from prefloop.models.load import load_causal_lm, load_tokenizer
    from prefloop.train.config import TrainConfig
    from prefloop.train.run import start_run

    model, tokenizer = tiny_causal, load_tokenizer("tiny")
    cfg = TrainConfig(model="tiny", output_dir=str(tmp_path), max_steps=1, report_to_tensorboard="no")
    run = start_run(cfg, tmp_path, model, "test", total_steps=1)
    ids = torch.tensor([[1, 2, 3, 4]])
    run.backward(model(input_ids=ids, labels=ids).loss, last=True)
    run.step_done(0, {"loss": 0.0}, tokens=4, started=0.0)
    assert run.optimizer.state  # AdamW holds exp_avg / exp_avg_sq after a step
    final = run.save_final(tokenizer)
    assert not run.optimizer.state
    assert all(p.grad is None for p in model.parameters())
    loaded = load_causal_lm(final)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
