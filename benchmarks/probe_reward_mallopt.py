"""One process, interleaved A/B: SmolLM2 reward-model forward+backward on the benchmark's first padded
batch with glibc returning freed memory at once (prefloop's mallopt: mmap threshold 64 KiB, trim 0)
vs keeping it (mmap threshold 1 GiB, trim threshold 1 GiB). Wall, CPU, system time, minor faults."""

import ctypes
import resource
import sys
import time

import torch

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
import harness

from prefloop.data.tokenize import pad_batch
from prefloop.models.default import default_model_dir
from prefloop.models.load import load_reward_model

torch.set_num_threads(2)
libc = ctypes.CDLL("libc.so.6")


def setting(prompt):
    libc.mallopt(-3, 64 * 1024 if prompt else 1 << 30)  # M_MMAP_THRESHOLD
    libc.mallopt(-1, 0 if prompt else 1 << 30)  # M_TRIM_THRESHOLD


path = str(default_model_dir())
enc = harness.encode_pairs(path, harness.make_pairs(64, 0), 128, 64)
b = pad_batch([s for p in enc[:8] for s in p], 0)
model = load_reward_model(path).train()


def step():
    u = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits.sum().backward()
    model.zero_grad(set_to_none=True)
    v = resource.getrusage(resource.RUSAGE_SELF)
    return (
        time.perf_counter() - t0,
        v.ru_utime - u.ru_utime,
        v.ru_stime - u.ru_stime,
        v.ru_minflt - u.ru_minflt,
    )


setting(False)
step()  # warm-up
for rep in range(2):
    for prompt in (True, False):
        setting(prompt)
        w, us, ss, f = step()
        print(
            "prompt-return" if prompt else "glibc-keep",
            rep,
            f"wall {w:.1f} s user {us:.1f} s system {ss:.2f} s faults {f}",
            flush=True,
        )
