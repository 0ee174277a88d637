"""Fixtures: a small synthetic Task01 dataset (session-wide) and tiny training configs (CPU, 1 thread)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from training_helpers import tiny_config

from python_backend.training.sample_data import write_sample_dataset


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding Task01_BrainTumour with 12 cases of 32³ (shared: tests must not modify it)."""
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
