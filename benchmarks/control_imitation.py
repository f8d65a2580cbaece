"""prefloop control side by side with imitation 1.0.1's PreferenceComparisons: same env, env steps,
label budget, oracle teacher, fragment length and seeds; the return reached and the wall time.

imitation pins gymnasium ~0.29 and stable-baselines3 ~2.2.1, so it cannot live in prefloop's
virtualenv (gymnasium >= 1.1). This script builds imitation's own virtualenv if it is missing
(``--venv``, default ``~/.cache/prefloop/imitation-venv``): ``torch==2.13.0`` first and pinned
(the CPU build; an unpinned torch would pull a multi-GB CUDA one), then ``imitation==1.0.1`` with
its own pins. Each imitation run is ``benchmarks/imitation_runner.py`` executed by that venv's
python (it imports nothing from prefloop); each prefloop run is ``python -m prefloop.cli control``
through ``control_labels.run``. Every run is a child process, timed from outside (``wall_s``).

One normalisation for both frameworks: (R − R_random) / (R_true − R_random) with R_random the
uniformly random policy and R_true prefloop's ``--reward true`` PPO (``control_labels``), each the
mean over the seeds. imitation's own PPO on the true reward (the RL Zoo's settings) is run too and
shown on the same scale, so a low imitation score can be told apart from a weak agent.

A crash of imitation is a result: its run is recorded with the error and counted as crashed; the
mean return is over the runs that finished. Results go to OUTPUT (per run) and to ``--results``
(``.json`` keyed by env, so several invocations fill one file, and ``.md``).

    flock /tmp/prefloop-heavy.lock python benchmarks/control_imitation.py --env CartPole-v1 \\
        --labels 30 100 300 --seeds 0 1 2 --total-steps 50000
    flock /tmp/prefloop-heavy.lock python benchmarks/control_imitation.py --env Pendulum-v1 \\
        --labels 200 --seeds 0 1 2 --total-steps 200000 \\
        --control-args --config examples/control/pendulum.yaml
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from control_labels import normalised_score, random_return  # noqa: E402
from control_labels import run as run_prefloop  # noqa: E402
from imitation_runner import ZOO_PPO  # noqa: E402  (stdlib only at import time)

TORCH_PIN = "torch==2.13.0"
IMITATION_PIN = "imitation==1.0.1"
MAX_ITERATIONS = 60  # imitation's documented Pendulum example: "Set to 60 for better performance"


def build_venv(venv: Path) -> Path:
    """imitation's virtualenv (built when ``import imitation`` fails there); returns its python."""
    python = venv / "bin" / "python"
    if (
        python.exists()
        and subprocess.run([python, "-c", "import imitation"], capture_output=True).returncode == 0
    ):
        return python
    print(f"building imitation's virtualenv in {venv} ({TORCH_PIN}, then {IMITATION_PIN})", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    for pins in ([TORCH_PIN], [TORCH_PIN, IMITATION_PIN]):  # torch first, so nothing pulls another
        done = subprocess.run([python, "-m", "pip", "install", "-q", *pins], capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-15:])
            raise SystemExit(f"pip install {' '.join(pins)} into {venv} failed:\n{tail}")
    return python


def imitation_schedule(
    total_steps: int, rollout: int, max_iterations: int = MAX_ITERATIONS
) -> tuple[int, int]:
    """(num_iterations, env steps) for imitation: prefloop's env steps, in whole rollouts per round.

    prefloop trains R = ceil(total_steps / rollout) whole rollouts. imitation trains the agent after
    each of its num_iterations + 1 query rounds (the initial round trains too), and SB3's PPO
    finishes every rollout it starts, so each round must be whole rollouts: the rounds are the
    largest d ≤ max_iterations + 1 that divides R (at least 2), num_iterations = d − 1. The runner
    turns the env steps R · rollout into imitation's ``total_timesteps`` (see imitation_runner.py).
    """
    rollouts = math.ceil(total_steps / rollout)
    rounds = max([d for d in range(2, min(rollouts, max_iterations + 1) + 1) if rollouts % d == 0], default=1)
    if rounds == 1:
        raise ValueError(f"{rollouts} rollout(s) of {rollout} steps cannot be split into imitation's rounds")
    return rounds - 1, rollouts * rollout


def run_imitation(out: Path, python: Path, args: argparse.Namespace, flags: list[str]) -> dict:
    """One runner invocation (reused if ``out`` holds a finished one); never raises on imitation's errors."""
    if out.exists() and "wall_s" in (result := json.loads(out.read_text())):
        return result
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [python, str(HERE / "imitation_runner.py"), "--env", args.env, "--out", str(out)]
    cmd += ["--eval-episodes", str(args.eval_episodes), *flags]
    started = time.perf_counter()
    with open(out.with_suffix(".log"), "w") as log:
        done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - started
    if done.returncode != 0 or not out.exists():
        tail = out.with_suffix(".log").read_text().strip().splitlines()[-3:]
        result = {"framework": "imitation", "error": f"runner exited {done.returncode}: {' | '.join(tail)}"}
    else:
        result = json.loads(out.read_text())
    result["wall_s"] = wall
    out.write_text(json.dumps(result, indent=2))
    return result


def reuse(source: Path, target: Path, args: argparse.Namespace, flags: list[str]) -> None:
    """Takes a finished prefloop run of ``control_labels.py`` (same layout) instead of running it again,
    after checking that it was made with this comparison's settings."""
    import yaml

    if (target / "summary.json").exists() or not (source / "summary.json").exists():
        return
    summary = json.loads((source / "summary.json").read_text())
    config = yaml.safe_load((source / "config.yaml").read_text())
    want = {"env": args.env, "total_steps": args.total_steps, "eval_episodes": args.eval_episodes}
    want |= {"segment_length": args.fragment_length, "seed": int(flags[flags.index("--seed") + 1])}
    if "--labels" in flags:
        want |= {
            "reward": "preference",
            "teacher": "oracle",
            "labels": int(flags[flags.index("--labels") + 1]),
        }
    else:
        want |= {"reward": "true"}
    if "--config" in args.control_args:
        want |= {"config": args.control_args[args.control_args.index("--config") + 1]}
    differ = {k: (config.get(k), v) for k, v in want.items() if config.get(k) != v}
    if differ or "wall_s" not in summary:
        raise SystemExit(f"{source}: not this comparison's run (config has, wanted: {differ})")
    target.mkdir(parents=True, exist_ok=True)
    (target / "config.yaml").write_text((source / "config.yaml").read_text())
    (target / "summary.json").write_text(json.dumps({**summary, "reused_from": str(source)}, indent=2))


def children_cpu_s() -> float:
    """User + system CPU seconds of the finished child processes so far (the runs are children)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def summarise(name: str, runs: list[dict], r_random: float, r_true: float) -> dict:
    """One table row: mean ± std over the runs that finished; crashed runs counted, their errors kept."""
    finished = [r for r in runs if not r.get("error")]
    returns = np.array([r["eval_return_mean"] for r in finished], dtype=float)
    scores = normalised_score(returns, r_random, r_true)
    errors = sorted({r["error"] for r in runs if r.get("error")})
    return {
        "run": name,
        "seeds": len(runs),
        "crashed": len(runs) - len(finished),
        "reused": sum(1 for r in runs if "reused_from" in r),
        "errors": errors,
        "return_mean": float(returns.mean()) if len(returns) else None,
        "return_std": float(returns.std()) if len(returns) else None,
        "score_mean": float(scores.mean()) if len(scores) else None,
        "score_std": float(scores.std()) if len(scores) else None,
        "per_seed": [None if r.get("error") else round(float(r["eval_return_mean"]), 1) for r in runs],
        "env_steps": sorted({int(r["env_steps"]) for r in finished if "env_steps" in r}),
        "wall_s_mean": float(np.mean([r["wall_s"] for r in runs])),
        "cpu_s_mean": float(np.mean(cpu)) if (cpu := [r["cpu_s"] for r in runs if "cpu_s" in r]) else None,
    }


def render(entry: dict) -> str:
    """The markdown section of one env: header line, then the table."""

    def cell(mean: float | None, std: float | None, fmt: str) -> str:
        return "—" if mean is None else f"{mean:{fmt}} ± {std:{fmt}}"

    lines = [
        entry["header"],
        "",
        "| run | finished / seeds | return (mean ± std) | normalised score | per seed | env steps | wall s / run | CPU s / run |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for row in entry["rows"]:
        per_seed = " / ".join("crash" if v is None else f"{v:g}" for v in row["per_seed"])
        steps = ", ".join(f"{s:,}" for s in row["env_steps"]) or "—"
        cpu = "—" if row["cpu_s_mean"] is None else f"{row['cpu_s_mean']:.0f}"
        lines.append(
            f"| {row['run']} | {row['seeds'] - row['crashed']} / {row['seeds']} | "
            f"{cell(row['return_mean'], row['return_std'], '.1f')} | "
            f"{cell(row['score_mean'], row['score_std'], '.2f')} | {per_seed} | {steps} | "
            f"{row['wall_s_mean']:.0f} | {cpu} |"
        )
    reused = sorted({r["run"] for r in entry["rows"] if r.get("reused")})
    if reused:
        lines += [
            "",
            f"Taken from control_labels.py's runs ({entry.get('reused_from')}): {', '.join(reused)}.",
        ]
    errors = sorted({e for row in entry["rows"] for e in row["errors"]})
    lines += ["", *[f"imitation's error: `{e}`" for e in errors]] if errors else []
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="CartPole-v1", choices=sorted(ZOO_PPO))
    parser.add_argument("--labels", type=int, nargs="+", default=[30, 100, 300])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--total-steps", type=int, default=50_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--fragment-length", type=int, default=25, help="both frameworks")
    parser.add_argument("--no-sb3-true", action="store_true", help="skip imitation's PPO on the true reward")
    parser.add_argument("--venv", default=os.path.expanduser("~/.cache/prefloop/imitation-venv"))
    parser.add_argument("--output-dir", default=None, help="default runs/control_imitation/ENV")
    parser.add_argument("--results", default=str(HERE / "results" / "control_imitation"))
    parser.add_argument("--no-run", action="store_true", help="no new runs: the table of the finished ones")
    parser.add_argument(
        "--reuse-prefloop",
        default=None,
        help="a control_labels.py output dir: its finished runs with these settings are taken, not rerun",
    )
    parser.add_argument(
        "--control-args",
        nargs=argparse.REMAINDER,
        default=[],
        help="more flags for prefloop (last on the line)",
    )
    args = parser.parse_args()
    root = Path(args.output_dir or f"runs/control_imitation/{args.env}")
    python = build_venv(Path(args.venv))
    zoo = ZOO_PPO[args.env]
    iterations, imitation_steps = imitation_schedule(args.total_steps, zoo["n_envs"] * zoo["n_steps"])
    # prefloop's runs: control_labels.run reads env, total_steps, eval_episodes and control_args
    pf_args = argparse.Namespace(
        env=args.env,
        total_steps=args.total_steps,
        eval_episodes=args.eval_episodes,
        control_args=[*args.control_args, "--segment-length", str(args.fragment_length)],
    )
    im_common = ["--fragment-length", str(args.fragment_length), "--num-iterations", str(iterations)]
    im_common += ["--total-steps", str(imitation_steps)]
    runs: dict[str, list[dict]] = {}
    randoms = []
    for seed in args.seeds:
        randoms.append(random_return(args.env, args.eval_episodes, seed))
        s = ["--seed", str(seed)]
        # (row name, framework, output, flags)
        jobs = [("prefloop true-reward PPO", "prefloop", f"true-s{seed}", ["--reward", "true", *s])]
        if not args.no_sb3_true:
            name = "imitation's PPO (SB3, RL Zoo settings), true reward"
            jobs.append((name, "imitation", f"im-true-s{seed}.json", [*im_common, "--reward", "true", *s]))
        for n in args.labels:
            lab = ["--labels", str(n), *s]
            jobs.append(
                (f"prefloop, {n} labels", "prefloop", f"pref{n}-s{seed}", [*lab, "--teacher", "oracle"])
            )
            jobs.append(
                (f"imitation 1.0.1, {n} labels", "imitation", f"im-{n}-s{seed}.json", [*im_common, *lab])
            )
        for name, framework, out, flags in jobs:
            path = root / out / "summary.json" if framework == "prefloop" else root / out
            if framework == "prefloop" and args.reuse_prefloop:
                reuse(Path(args.reuse_prefloop) / out, root / out, args, flags)
            if args.no_run and not path.exists():
                continue  # --no-run: the table of what is there
            fresh, cpu_before = not path.exists(), children_cpu_s()
            if framework == "prefloop":
                result = run_prefloop(root / out, pf_args, flags)
            else:
                result = run_imitation(path, python, args, flags)
            if fresh:  # a run reused from an earlier invocation keeps the CPU time measured then
                result["cpu_s"] = children_cpu_s() - cpu_before
                path.write_text(json.dumps(result, indent=2))
            runs.setdefault(name, []).append(result)
            shown = result.get("error") or f"{result['eval_return_mean']:.1f}"
            print(f"seed {seed} {name}: {shown} ({result['wall_s']:.0f} s)", flush=True)
    r_random = float(np.mean(randoms))
    r_true = float(np.mean([r["eval_return_mean"] for r in runs["prefloop true-reward PPO"]]))
    header = (
        f"**{args.env}**, {args.total_steps:,} env steps asked (both train whole PPO rollouts; imitation: "
        f"{imitation_steps:,} env steps in {iterations} iterations + the initial round), oracle teacher, fragments of "
        f"{args.fragment_length} steps, seeds {args.seeds}, {args.eval_episodes} deterministic evaluation "
        f"episodes; random policy {r_random:.1f} (= 0), prefloop true-reward PPO {r_true:.1f} (= 1); "
        f"prefloop flags: `{' '.join(args.control_args) or '(defaults)'}`"
    )
    entry = {
        "header": header,
        "env": args.env,
        "total_steps": args.total_steps,
        "imitation_total_timesteps": imitation_steps,
        "imitation_num_iterations": iterations,
        "imitation_ppo": zoo,
        "labels": args.labels,
        "seeds": args.seeds,
        "random": r_random,
        "true": r_true,
        "prefloop_control_args": args.control_args,
        "reused_from": args.reuse_prefloop,
        "rows": [summarise(name, rs, r_random, r_true) for name, rs in runs.items()],
        "date": time.strftime("%Y-%m-%d"),
    }
    text = render(entry)
    print(text)
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    path = results.with_suffix(".json")
    everything = json.loads(path.read_text()) if path.exists() else {}
    everything[args.env] = entry
    path.write_text(json.dumps(everything, indent=2) + "\n")
    sections = [render(e) for _, e in sorted(everything.items())]
    results.with_suffix(".md").write_text(
        "# prefloop control vs imitation 1.0.1 (benchmarks/control_imitation.py)\n\n"
        + "\n\n".join(sections)
        + "\n"
    )


if __name__ == "__main__":
    main()
