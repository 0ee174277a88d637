"""Helpers shared by the sidecar tests: real child training processes (`trainer_child.py`) and waiting for them to
register. A module of its own, not conftest.py: with several test folders, `import conftest` may find another's."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from subprocess import Popen

from crashguard.runs.files import read_json

TRAINER = Path(__file__).resolve().parents[1] / "children" / "trainer_child.py"
StartTrainer = Callable[..., Popen]


def wait_registered(runs_dir: Path, name: str, pid: int, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = read_json(runs_dir / name / "status.json")
        if isinstance(status, dict) and status.get("pid") == pid and status.get("state") == "running":
            return status
        time.sleep(0.05)
    raise AssertionError(f"run {name} (pid {pid}) did not register within {timeout} s")
