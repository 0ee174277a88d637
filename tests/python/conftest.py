"""Shared test set-up: the venv's interpreter, the repository root, and the test process's own OOM score kept as it
was (a test that registers a run in this process raises it, and every child would inherit the raise)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def python() -> str:
    return sys.executable


@pytest.fixture(autouse=True)
def _keep_own_oom_score() -> Iterator[None]:
    path = Path("/proc/self/oom_score_adj")
    before = path.read_text() if path.exists() else None
    yield
    if before is not None and path.read_text() != before:
        with contextlib.suppress(OSError):  # lowering it back needs privileges; the tests run as root in CI
            path.write_text(before)
