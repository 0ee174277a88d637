"""Helpers for the training tests: tiny configs, running the CLI in a child, reading metrics."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from locations import REPO


def tiny_config(data_root: Path, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": "tiny",
        "data": {"root": str(data_root), "cache_rate": 1.0, "workers": 0, "val_fraction": 0.25},
        "model": {"name": "segresnet", "init_filters": 8, "levels": 3},
        "train": {"roi_size": [24, 24, 24], "epochs": 2, "effective_batch": 4, "micro_batch": 2,
                  "learning_rate": 0.003, "threads": 1, "sw_batch_size": 2, "seed": 0},
        "checkpoint": {"every_steps": 2, "keep": 3},
    }
    for section, values in overrides.items():
        if isinstance(values, dict):
            config.setdefault(section, {}).update(values)
        else:
            config[section] = values
    return config


def child_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def crashguard(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crashguard", *args], cwd=cwd, env=child_env(),
                          capture_output=True, text=True, timeout=timeout)


def records(run_dir: Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The run's metrics.jsonl records (step, val, best), of one type if given."""
    from crashguard.training.metrics import read_metrics

    found = read_metrics(run_dir / "metrics.jsonl")
    return [r for r in found if kind is None or r["type"] == kind]


def events(run_dir: Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The run's event log (events.jsonl), of one kind if given."""
    from crashguard.runs.event_log import read_events

    return [r for r in read_events(run_dir / "events.jsonl") if kind is None or r["event"] == kind]
