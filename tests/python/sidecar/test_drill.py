"""The fast-spike drill (issue 11), with real processes only: a guarded training run whose step takes 12 s, the
real sidecar with its ladder on, and an unregistered memory hog that grows by 200 MiB/s past warning and critical
(thresholds set a few points above current use). The run is cleaned (the request waits at its step boundary), then
stopped urgently: the checkpoint of its last completed step is written a bounded time after RAM went critical,
however long the step; the resumed run loses and repeats no step; the hog is never signalled; samples keep coming
at their rate throughout."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import memory_hog
import psutil
import pytest
from locations import CHILDREN
from sidecar_session import sidecar

from crashguard.runs.files import read_json
from crashguard.sidecar import protocol as p
from crashguard.sidecar.escalation import CLEANUP, STOP

TRAINER = CHILDREN / "slow_trainer.py"
STEP_SECONDS = 12.0
# The ladder waits at most 5 s for a cleanup at critical (a run answers between steps), then sends the urgent stop,
# which a run notices within 0.2 s and answers with a checkpoint at once: ~5.5 s whatever the step length. The
# bound leaves room for a loaded 2-core machine and is still below the step.
BOUND_S = 10.0
INTERVAL = 0.25
STEPS = 3  # the hog arrives early in step 2; step 3 is room for a slow machine
MAX_HOG = 3 * 2**30


def _steps(run_dir: Path) -> list[dict]:
    path = run_dir / "steps.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


@pytest.mark.slow
async def test_fast_spike_drill_stops_a_long_step_in_bounded_time_and_the_resume_loses_no_step(
        runs_dir: Path, tmp_path: Path) -> None:
    run_dir = runs_dir / "slow"
    trainer = subprocess.Popen([sys.executable, str(TRAINER), "--runs-dir", str(runs_dir), "--steps", str(STEPS),
                                "--step-seconds", str(STEP_SECONDS)], env=_env(), stderr=subprocess.PIPE, text=True)
    hog: subprocess.Popen | None = None
    try:
        async with sidecar({"runsDirectory": str(runs_dir), "sampleIntervalMs": int(INTERVAL * 1000)}) as s:
            deadline = time.monotonic() + 120
            while not _steps(run_dir):  # step 1 done: the hog arrives early in step 2
                assert trainer.poll() is None, trainer.stderr.read() if trainer.stderr else ""
                assert time.monotonic() < deadline, "the run never completed its first step"
                await s.wait_samples(1)
            ram = s.of(p.SAMPLE)[-1]["ram"]
            warning, critical = round(ram["percent"] + 2, 1), round(ram["percent"] + 4, 1)
            if critical > 98:
                pytest.skip(f"RAM already at {ram['percent']}%: no room for the drill")
            target = int((critical + 2) / 100 * ram["total"]) - ram["used"]
            if target > MAX_HOG:
                pytest.skip(f"reaching critical needs {target / 2**30:.1f} GiB here (more than the drill may take)")
            await s.request(p.UPDATE_SETTINGS, {"settings": {
                "ramWarningPercent": warning, "ramCriticalPercent": critical, "autoCleanup": True,
                "criticalAction": "checkpointAndStop"}})
            marker = tmp_path / "hog-signals"
            hog = subprocess.Popen(memory_hog.command(target, marker))
            stop = await s.wait_for(p.ACTION, lambda a: a["action"] == STOP, timeout=90)
            assert trainer.wait(timeout=30) == 0, trainer.stderr.read() if trainer.stderr else ""
            assert hog.poll() is None and psutil.Process(hog.pid).status() != psutil.STATUS_STOPPED
            await s.wait_samples(4)  # sampling goes on after the stop too
            samples = s.received[p.SAMPLE]
    finally:
        for proc in (hog, trainer):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert not marker.exists(), f"the hog was signalled: {marker.read_text()}"

    # A cleanup round at warning (its request waits for the step boundary), then the urgent stop of the only
    # registered run. Each is reported when it ends: the round may end after the stop (the run left unanswered).
    actions = {a["action"]: a for a in s.of(p.ACTION)}
    assert sorted(actions) == sorted([CLEANUP, STOP]), s.of(p.ACTION)
    assert actions[CLEANUP]["reason"].startswith("RAM warning"), actions[CLEANUP]
    assert stop["result"]["ok"] and not stop["result"]["signalled"], stop
    status = read_json(run_dir / "status.json")
    assert status["state"] == "stopped" and "urgent" in status["exit_cause"], status
    checkpoint = Path(stop["result"]["checkpoint"])
    completed = len(_steps(run_dir))
    assert 1 <= completed < STEPS
    assert checkpoint.name == f"step-{completed:08d}.pt", checkpoint  # the last completed step, not the one in flight

    critical_at = next(x["time"] for _, x in samples if x["ram"]["level"] == "critical")
    to_checkpoint = checkpoint.stat().st_mtime - critical_at
    arrivals = [t for t, _ in samples]
    gaps = [b - a for a, b in itertools.pairwise(arrivals[1:])]
    print(f"\ndrill: hog {target / 2**20:.0f} MiB at 200 MiB/s; a step takes {STEP_SECONDS:g} s; RAM critical -> "
          f"checkpoint written in {to_checkpoint:.2f} s; {len(arrivals)} samples at {INTERVAL} s, max gap "
          f"{max(gaps):.3f} s")
    assert 0 < to_checkpoint < BOUND_S < STEP_SECONDS
    assert max(gaps) < 4 * INTERVAL

    # Resume exactly as the crash prompt's Resume does: the recorded command, in its folder.
    command = status["resume_command"]
    resumed = subprocess.run(command["argv"], cwd=command["cwd"], env=_env(), capture_output=True, text=True,
                             timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    steps = _steps(run_dir)
    # Every step once, each with its own batch: none lost, none repeated.
    assert [(r["step"], r["batch"]) for r in steps] == [(n + 1, n) for n in range(STEPS)], steps
    assert read_json(run_dir / "status.json")["state"] == "finished"
