"""One process, interleaved: SmolLM2 reward-model forward+backward on the benchmark's first padded
batch in fp32 vs under bf16 autocast (TRL RewardConfig's default bf16=True on CPU)."""

import sys
import time

import torch

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
import harness

from prefloop.data.tokenize import pad_batch
from prefloop.models.default import default_model_dir
from prefloop.models.load import load_reward_model

torch.set_num_threads(2)
path = str(default_model_dir())
enc = harness.encode_pairs(path, harness.make_pairs(64, 0), 128, 64)
b = pad_batch([s for p in enc[:8] for s in p], 0)
model = load_reward_model(path).train()


def step(bf16):
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    out.float().sum().backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - t0, time.process_time() - c0


res = {False: [], True: []}
for rep in range(3):
    for bf16 in (False, True):
        w, c = step(bf16)
        res[bf16].append((w, c))
        print("bf16" if bf16 else "fp32", rep, f"wall {w:.2f} s, CPU {c:.2f} s", flush=True)
for bf16 in (False, True):
    ws = sorted(x[0] for x in res[bf16][1:])
    cs = sorted(x[1] for x in res[bf16][1:])
    print("bf16" if bf16 else "fp32", "min of reps 2-3: wall", round(ws[0], 2), "CPU", round(cs[0], 2))
