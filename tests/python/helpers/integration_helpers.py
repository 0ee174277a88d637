"""Helpers for the integration tests: the examples, run as the user would run them, in child processes."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
from locations import EXAMPLES, REPO

sys.path.insert(0, str(EXAMPLES))  # tiny3d: the examples' model and data
# (example file, the key of the weights in its final checkpoint)
INTEGRATIONS = {
    "plain": ("plain_loop.py", "model"),
    "monai": ("monai_trainer.py", "network"),
    "lightning": ("lightning_module.py", "state_dict"),
}
STEPS_PER_EPOCH = 4  # 16 samples, batch 4


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(EXAMPLES), env.get("PYTHONPATH", "")])
    return env


def steps(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "steps.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def events(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def status(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "status.json").read_text())


def final_weights(run_dir: Path, key: str) -> dict[str, torch.Tensor]:
    newest = sorted((run_dir / "checkpoints").glob("step-*"))[-1]
    state = torch.load(newest, map_location="cpu", weights_only=False)
    weights = state[key]
    return {k.removeprefix("model."): v for k, v in weights.items()}
