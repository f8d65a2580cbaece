"""Fixtures for teacher tests: the tiny model as an in-process judge backend, and a real
`prefloop serve-judge --model tiny` process on a loopback port (an OpenAI-compatible endpoint)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_backend():
    from prefloop.teachers.judge import LocalBackend

    return LocalBackend("tiny", batch_size=4)


@pytest.fixture(scope="session")
def tiny_judge_server(tmp_path_factory):
    """Base URL (http://127.0.0.1:PORT/v1) of `prefloop serve-judge --model tiny` in a subprocess."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("judge-server") / "server.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "prefloop.cli", "serve-judge", "--model", "tiny", "--port", str(port)]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"judge server exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                if httpx.get(url + "/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"judge server did not come up:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
