"""Fixtures for the defence drills: `memory_group`, a memory cgroup per test, always removed (memory_groups.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent / "sidecar"))  # sidecar_session (the real sidecar over stdio), memory_hog

from memory_groups import MakeGroup, MemoryGroup, writable_parent  # noqa: E402


@pytest.fixture
def memory_group(request: pytest.FixtureRequest) -> Iterator[MakeGroup]:
    """A factory: `memory_group(limit_bytes)` creates a memory group with that hard limit; every group is emptied
    (its processes SIGKILLed) and removed when the test ends, however it ends."""
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
        deadline = time.monotonic() + 10
        while group.path.exists() and time.monotonic() < deadline:
            for pid in group.pids() if group.path.exists() else []:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                group.path.rmdir()
            time.sleep(0.05)
        assert not group.path.exists(), f"could not remove the test's memory group {group.path}"
