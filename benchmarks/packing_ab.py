"""Interleaved A/B of prefloop's batch layouts in ONE process: padded vs packed vs packed + shared prefix.

On a machine shared with other jobs, wall and even CPU time of separate runs swing by 2-4x with
the load (benchmarks/README.md). Here the same model takes full training steps (forward,
backward, gradient clipping, fused AdamW) on the same micro-batch in each layout in turn, round
after round, so every layout sees the same load; the ratio of their median step times is what
packing and prefix sharing buy, free of the load's drift. The learning rate is 0, so every
round trains the same weights and all layouts compute the same loss (printed, must agree).

Tasks: `dpo` (SmolLM2, 8 pairs: chosen + rejected log-probs), `reward` (SmolLM2 or MiniLM
backbone, 8 pairs: scalar rewards), `sft` (SmolLM2, 8 demonstrations).

    python benchmarks/packing_ab.py --task dpo --rounds 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

LAYOUTS = {"padded": (False, False), "packed": (True, False), "packed+shared": (True, True)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", choices=["dpo", "reward", "sft"], default="dpo")
    p.add_argument("--backbone", default="default", help="reward task: 'default' (SmolLM2) or 'minilm'")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--batch", type=int, default=0, help="which batch of 8 pairs of the benchmark data")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="write the result as JSON here")
    args = p.parse_args(argv)
    torch = harness.setup_torch(args.threads, 0)
    from prefloop.models import packing
    from prefloop.models.load import load_causal_lm, load_reward_model, resolve_model

    backbone = args.backbone if args.task == "reward" else "default"
    path = resolve_model(backbone)
    pairs = harness.encode_pairs(path, harness.make_pairs(64, 0), 128, 64)[
        8 * args.batch : 8 * args.batch + 8
    ]
    seqs = [c for c, _ in pairs] if args.task == "sft" else [s for pair in pairs for s in pair]
    model = (load_reward_model(path) if args.task == "reward" else load_causal_lm(path)).train()
    model.config.use_cache = False
    packing.enable_packing(model)  # padded batches still take transformers' SDPA path
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=0.0, fused=True)
    causal = packing.is_causal_model(model)

    def loss_of(packed: bool, share: bool):
        if args.task == "reward":
            if packed:
                layout = packing.pack(seqs, share_prefix=share and causal, causal=causal)
                r = packing.packed_rewards(model, layout)
            else:
                from prefloop.data.tokenize import pad_batch

                b = pad_batch(seqs, 0)
                r = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, 0]
            return -torch.nn.functional.logsigmoid(r[0::2] - r[1::2]).mean()
        if packed:
            logps, counts = packing.packed_response_logps(model, packing.pack(seqs, share_prefix=share))
        else:
            from prefloop.data.tokenize import pad_batch
            from prefloop.models.logps import response_logps

            b = pad_batch(seqs, 0)
            logps, counts = response_logps(model, b["input_ids"], b["attention_mask"], b["response_mask"])
        if args.task == "sft":
            return -logps.sum() / counts.sum()
        return -torch.nn.functional.logsigmoid(0.1 * (logps[0::2] - logps[1::2])).mean()

    def step(packed: bool, share: bool) -> tuple[float, float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        loss = loss_of(packed, share)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t0, time.process_time() - c0, loss.item()

    slots = {
        "padded": len(seqs) * max(len(s) for s in seqs),
        "packed": packing.pack(seqs, share_prefix=False, causal=causal).num_slots,
        "packed+shared": packing.pack(seqs, share_prefix=causal).num_slots,
    }
    layouts = LAYOUTS if causal else {k: v for k, v in LAYOUTS.items() if k != "packed+shared"}
    times: dict[str, list[tuple[float, float, float]]] = {k: [] for k in layouts}
    for packed, share in layouts.values():  # warm-up round, not counted
        step(packed, share)
    for r in range(args.rounds):
        order = list(layouts.items()) if r % 2 == 0 else list(reversed(layouts.items()))
        for name, (packed, share) in order:
            times[name].append(step(packed, share))
            w, c, loss = times[name][-1]
            print(f"round {r} {name:14s} wall {w:6.2f} s  CPU {c:6.2f} s  loss {loss:.6f}", flush=True)
    result = {
        "task": args.task,
        "backbone": backbone,
        "rounds": args.rounds,
        "token_slots": slots,
        "layouts": {},
    }
    base = statistics.median(t[0] for t in times["padded"])
    base_cpu = statistics.median(t[1] for t in times["padded"])
    for name, ts in times.items():
        wall, cpu = statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts)
        result["layouts"][name] = {
            "median_wall_s": wall,
            "median_cpu_s": cpu,
            "speedup_vs_padded_wall": base / wall,
            "speedup_vs_padded_cpu": base_cpu / cpu,
            "token_slots": slots[name],
            "loss": ts[-1][2],
        }
        print(
            f"{name:14s} median wall {wall:.2f} s (x{base / wall:.2f} vs padded), CPU {cpu:.2f} s "
            f"(x{base_cpu / cpu:.2f}), token slots {slots[name]}",
            flush=True,
        )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
