"""Fixtures for the sidecar tests: a runs directory and real child training processes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trainer_helpers import TRAINER, StartTrainer, wait_registered


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    path = tmp_path / "runs"
    path.mkdir()
    return path


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
