"""The memory monitor ships for macOS too (the darwin .vsix): without Linux's /proc, /sys and pidfd it must serve,
not crash — RAM from psutil, no cgroup limit, no memory pressure (with the reason), no GPU — and a run it cannot
prove registered (the proof reads /proc/<pid>/fd) is never cleaned up, stopped or signalled. Simulated here on
Linux by children/non_linux_monitor.py, which hides /proc and /sys from crashguard's code (not from psutil, which
has its own implementation per platform) and removes pidfd."""

from __future__ import annotations

import sys
from pathlib import Path

from locations import CHILDREN
from sidecar_session import sidecar
from trainer_helpers import StartTrainer

from crashguard.sidecar import protocol as p

COMMAND = [sys.executable, str(CHILDREN / "non_linux_monitor.py")]


async def test_the_monitor_serves_without_proc_sys_or_pidfd(runs_dir: Path, start_trainer: StartTrainer) -> None:
    trainer = start_trainer("mac-run")
    async with sidecar({"runsDirectories": [str(runs_dir)], "sampleIntervalMs": 200}, command=COMMAND) as s:
        samples = await s.wait_samples(3)
        last = samples[-1]
        assert 0 < last["ram"]["percent"] <= 100 and last["ram"]["total"] > 0
        assert last["ram"]["limitSource"] == "physical"  # no cgroup to read
        assert last["pressure"] is None and "pressure" in last["pressureReason"]
        assert last["topProcesses"], "psutil still lists the heaviest processes"
        [run] = [r for r in last["runs"] if r["name"] == "mac-run"]
        assert run["alive"] is False, "a registration that cannot be proved is not treated as a live run"
        cleanup = await s.request(p.CLEANUP, {"timeoutMs": 2000})
        assert cleanup["runs"] == [] and cleanup["sidecar"] is not None
        stop = await s.request(p.STOP_RUN, {"run": "mac-run", "timeoutMs": 2000})
        assert stop["ok"] is False and stop["signalled"] is False
        await s.wait_samples(2)  # still sampling after the requests
    assert trainer.poll() is None, "the run was never signalled"
