"""Fixtures for the sidecar tests: a runs directory and real child training processes."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from python_backend.runs.files import read_json

TRAINER = Path(__file__).with_name("trainer_child.py")


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    path = tmp_path / "runs"
    path.mkdir()
    return path


def wait_registered(runs_dir: Path, name: str, pid: int, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = read_json(runs_dir / name / "status.json")
        if isinstance(status, dict) and status.get("pid") == pid and status.get("state") == "running":
            return status
        time.sleep(0.05)
    raise AssertionError(f"run {name} (pid {pid}) did not register within {timeout} s")


StartTrainer = Callable[..., subprocess.Popen]


@pytest.fixture
def start_trainer(runs_dir: Path, tmp_path: Path) -> Iterator[StartTrainer]:
    started: list[subprocess.Popen] = []

    def start(name: str, mb: int = 300, hold: str = "gc", no_poll: bool = False, step_seconds: float = 0.1,
              record_requests: Path | None = None) -> subprocess.Popen:
        args = [sys.executable, str(TRAINER), "--runs-dir", str(runs_dir), "--name", name, "--mb", str(mb),
                "--hold", hold, "--step-seconds", str(step_seconds)]
        if no_poll:
            args.append("--no-poll")
        if record_requests is not None:
            args += ["--record-requests", str(record_requests)]
        log = (tmp_path / f"{name}.log").open("w")
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)
        started.append(proc)
        wait_registered(runs_dir, name, proc.pid)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
