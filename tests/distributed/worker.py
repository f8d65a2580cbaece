"""Runs prefloop commands one after another inside one process of a multi-process launch.

    accelerate launch --config_file examples/accelerate/ddp.yaml tests/distributed/worker.py JOBS.json

JOBS.json is a list of {"argv": [command, flags...], "crash_after": N or null, "exit_code_file":
PATH (optional: a job expected to stop with SystemExit writes its code there)}. Each job is
exactly what `prefloop COMMAND FLAGS` runs (`prefloop.cli.main`); several jobs share one launch
so the processes start (and import torch) once. `crash_after` stops the job right after
optimizer step N (and its checkpoint) on every rank, as a killed run would.
"""

import json
import sys
from pathlib import Path

from prefloop.cli import main
from prefloop.train.run import Run


class Crash(Exception):
    pass


def run_job(job: dict) -> None:
    original = Run.step_done
    crash_after = job.get("crash_after")

    def step_done(self, step, *args, **kwargs):
        original(self, step, *args, **kwargs)
        if crash_after is not None and step + 1 == crash_after:
            raise Crash

    Run.step_done = step_done
    try:
        main(job["argv"])
    except Crash:
        pass
    except SystemExit as exc:  # a command that refuses to run (exit 2 with a one-line message)
        if "exit_code_file" not in job:
            raise
        Path(job["exit_code_file"]).write_text(str(exc.code))
    finally:
        Run.step_done = original


if __name__ == "__main__":
    for job in json.loads(Path(sys.argv[1]).read_text()):
        run_job(job)
