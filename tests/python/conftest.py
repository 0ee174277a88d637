"""Shared test set-up: the venv's interpreter, the repository root, the test process's own OOM score kept as it
was (a test that registers a run in this process raises it, and every child would inherit the raise), and the
fixtures several packages' tests use: a runs folder with real child trainers, a memory cgroup per test, a small
synthetic Task01 dataset.

Helper modules live in helpers/, scripts the tests start as processes in children/ (both on sys.path through
pytest's `pythonpath`, pyproject.toml)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from locations import REPO
from memory_groups import MakeGroup, MemoryGroup, remove, writable_parent
from trainer_helpers import TRAINER, StartTrainer, wait_registered
from training_helpers import tiny_config


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def python() -> str:
    return sys.executable


@pytest.fixture(autouse=True, scope="session")
def _private_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The user's state folder (the monitor's crash witness, the crash-seal key: util/user_dirs.py) is the
    session's own, for this process and every child it starts: tests never read or write the real one."""
    before = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))
    yield
    if before is None:
        os.environ.pop("XDG_STATE_HOME", None)
    else:
        os.environ["XDG_STATE_HOME"] = before


@pytest.fixture(autouse=True)
def _keep_own_oom_score() -> Iterator[None]:
    path = Path("/proc/self/oom_score_adj")
    before = path.read_text() if path.exists() else None
    yield
    if before is not None and path.read_text() != before:
        with contextlib.suppress(OSError):  # lowering it back needs privileges; the tests run as root in CI
            path.write_text(before)


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    path = tmp_path / "runs"
    path.mkdir()
    return path


@pytest.fixture
def start_trainer(runs_dir: Path, tmp_path: Path) -> Iterator[StartTrainer]:
    """Starts real child trainers (children/trainer_child.py) that register in `runs_dir`; all killed at the end."""
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


@pytest.fixture
def memory_group(request: pytest.FixtureRequest) -> Iterator[MakeGroup]:
    """A factory: `memory_group(limit_bytes)` creates a memory group with that hard limit; every group is emptied
    (its processes SIGKILLed) and removed when the test ends, however it ends (helpers/memory_groups.py)."""
    found = writable_parent()
    if isinstance(found, str):
        pytest.skip(found)
    parent, version = found
    made: list[MemoryGroup] = []

    def make(limit: int) -> MemoryGroup:
        path = parent / f"crashguard-test-{os.getpid()}-{len(made)}"
        path.mkdir()
        group = MemoryGroup(path, version)
        made.append(group)
        group.set_limit(limit)
        return group

    yield make
    for group in made:
        remove(group)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding Task01_BrainTumour with 12 cases of 32³ (shared: tests must not modify it)."""
    from crashguard.training.sample_data import write_sample_dataset

    root = tmp_path_factory.mktemp("data")
    write_sample_dataset(root / "Task01_BrainTumour", cases=12, size=32, seed=1)
    return root


@pytest.fixture
def write_config(tmp_path: Path, data_root: Path) -> Callable[..., Path]:
    def write(name: str = "config.json", raw: str | None = None, **overrides: Any) -> Path:
        path = tmp_path / name
        path.write_text(raw if raw is not None else json.dumps(tiny_config(data_root, **overrides)))
        return path

    return write
