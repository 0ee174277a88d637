"""A real `crashguard train --memory-max` on the small synthetic data: the supervisor starts the trainer in a
memory group of its own (a child of this test's group, removed when the run ends); the trainer's working set
(~450 MiB: torch, MONAI, the model, the cached cases) is far over the high mark of 300 MiB and far under the hard
limit of 1200 MiB. At its first step boundary the trainer cleans up, is still over, backs off (micro-batch 2 -> 1),
is still over at its next one, and checkpoints and stops by itself (exit 3). The kernel's hard limit is never hit
(the group's failcnt and OOM-kill count stay 0, read by the real sidecar while the run lives), and the throttling
shows in its status, its metrics and the sidecar's history (what the memory report shows)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from memory_groups import writable_parent
from sidecar_session import sidecar

from crashguard.runs.containment import resolve_limits
from crashguard.runs.event_log import read_events
from crashguard.sidecar import protocol as p
from crashguard.training.sample_data import write_sample_dataset

pytestmark = pytest.mark.slow
MiB = 2**20
CONFIG = {
    "name": "capped", "data": {"root": "data", "cache_rate": 1.0, "workers": 0, "val_fraction": 0.25},
    "model": {"name": "segresnet", "init_filters": 8, "levels": 3},
    "train": {"roi_size": [24, 24, 24], "epochs": 20, "effective_batch": 4, "micro_batch": 2, "threads": 1,
              "seed": 0},
    "checkpoint": {"every_steps": 50, "keep": 2},
}


async def test_a_contained_run_over_its_high_mark_backs_off_then_checkpoints_and_stops_by_itself(
        tmp_path: Path) -> None:
    found = writable_parent()
    if isinstance(found, str):
        pytest.skip(found)
    write_sample_dataset(tmp_path / "data" / "Task01_BrainTumour", cases=8, size=32, seed=1)
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    runs = tmp_path / "runs"
    top, high = resolve_limits(1200 * MiB, 300 * MiB)
    async with sidecar({"runsDirectory": str(runs), "sampleIntervalMs": 500}, cwd=str(tmp_path)) as session:
        train = subprocess.Popen(
            [sys.executable, "-m", "crashguard", "train", "--config", "config.json", "--runs-dir", "runs",
             "--no-progress", "--memory-max", "1200M", "--memory-high", "300M"],
            cwd=tmp_path, stderr=subprocess.PIPE, text=True, env={"PYTHONUNBUFFERED": "1", **_env()})
        try:
            live = await session.wait_for(p.SAMPLE, lambda s: any(
                r["name"] == "capped" and r["alive"] and r["memory"] for r in s["runs"]), timeout=240)
            stopped = await session.wait_for(p.RUN_EVENT, lambda e: e["event"] == "stopped", timeout=240)
            _, err = train.communicate(timeout=120)
        finally:
            if train.poll() is None:
                train.kill()
        history = await session.request(p.HISTORY, {})

    assert train.returncode == 3, err[-3000:]
    assert "contained in the cgroup v1 memory group" in err or "contained in the cgroup v2 memory group" in err
    seen = next(r for r in live["runs"] if r["name"] == "capped")
    memory = seen["memory"]
    assert (memory["max"], memory["high"]) == (top, high) and Path(memory["cgroup"]).name.startswith("crashguard-")
    assert memory["maxEvents"] == 0 and memory["oomKills"] == 0  # the hard limit was never hit
    assert seen["oomScoreAdj"] == 500

    status = json.loads((runs / "capped" / "status.json").read_text())
    assert status["state"] == "stopped" and Path(status["checkpoint"]).exists()
    assert "memory high mark: working set" in status["exit_cause"]
    assert status["exit_cause"].endswith("checkpoint and stop before the kernel's OOM killer acts")
    assert status["memory_max"] == top and status["memory_high"] == high
    assert status["memory_used"] > high and status["memory_over_high"] >= 2
    assert stopped["run"]["checkpoint"] == status["checkpoint"]

    events = list(read_events(runs / "capped" / "events.jsonl"))  # the run's one event log
    kinds = [e["event"] for e in events]
    assert kinds.index("memory_high") < kinds.index("ram_backoff") < len(kinds) - kinds[::-1].index("memory_high") - 1
    backoff = next(e for e in events if e["event"] == "ram_backoff")
    assert "micro-batch 2->1" in backoff["message"] and "memory high mark" in backoff["message"]
    assert "cleanup freed" in next(e for e in events if e["event"] == "memory_high")["message"]
    notes = [e["message"] for e in history["events"] if e["kind"] == "training"]
    assert any("memory high mark" in note for note in notes), notes
    assert not list(writable_parent()[0].glob("crashguard-capped-*"))  # type: ignore[index]


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
