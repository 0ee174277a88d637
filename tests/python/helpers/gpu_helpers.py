"""Helpers for the GPU checks: children that answer in JSON, figures in MiB."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from training_helpers import child_env, tiny_config

MIB = 2**20
GIB = 2**30
HOLD_MIB = 2048  # what the known process (vram_holder.py) holds


def run_json(args: list[str], env: dict[str, str] | None = None, timeout: float = 300,
             cwd: Path | None = None) -> dict[str, Any]:
    """Run a child (a Python script printing one JSON object on its last stdout line) and return that object."""
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**child_env(), **(env or {})})
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value / MIB:,.0f} MiB"


def gpu_config(data_root: Path, **train: Any) -> dict[str, Any]:
    """A training config big enough for activations to dominate VRAM: SegResNet(16 filters, 4 levels), ROI 96³."""
    return tiny_config(data_root, model={"name": "segresnet", "init_filters": 16, "levels": 4},
                       data={"val_fraction": 0.1, "workers": 0, "cache_rate": 1.0},
                       train={"roi_size": [96, 96, 96], "epochs": 2, "effective_batch": 8, "micro_batch": 8,
                              "amp": True, "device": "cuda", "threads": 4, "sw_batch_size": 2, **train},
                       checkpoint={"every_steps": 2, "keep": 2})


def pid_namespace_note(pid: int) -> str | None:
    """Why NVML cannot list `pid` here, when that is the reason: NVML reports the host's pids, so in a container
    with its own pid namespace no process of ours appears under its own pid (and NVML's pids resolve to nothing)."""
    from crashguard.monitor.gpu import GPUMonitor

    gpus = GPUMonitor().read()
    if any(p.pid == pid for g in gpus for p in g.processes):
        return None
    foreign = [p for g in gpus for p in g.processes if p.user is None]
    if not foreign:
        return None
    return (f"pid {pid} is not among NVML's pids, and {len(foreign)} pid(s) NVML lists do not exist here: this runs "
            f"in a container with its own pid namespace, where NVML's (host) pids cannot be matched")
