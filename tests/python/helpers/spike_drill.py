"""The fast-spike drill (issue 22), with real processes only, shared by its test (a short version) and the bench
(`python -m benchmarks.spike_drill`, the full one).

A memory group the drill creates is the whole "machine": its limit is the kernel's limit, and the real sidecar, a
real guarded trainer (children/slow_trainer.py: crashguard.guarded_run, one step takes `step_seconds`) and an
unregistered hog (children/memory_hog.py) all run inside it, so the sidecar's RAM figures are the group's (as in a
container). The thresholds put `to_limit` bytes between critical and the limit: the issue's case is 90 % of 24 GB,
2.4 GB, which a 1 GB/s spike crosses in ~2.4 s. The sidecar samples at the default interval (1 s) and adapts.

When the trainer has completed its first step, the hog grows at `rate_mb` MiB/s up to 97 % of the limit (where it
holds: the drill's "limit", reached when its target is), past warning (a cleanup round: the run only answers it
between steps) and critical: the ladder should stop the run at once, urgently, because the limit comes sooner than
the cleanup's wait. Then the run is resumed through its recorded resumeCommand.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import memory_hog
import psutil
from locations import CHILDREN
from memory_groups import MemoryGroup
from sidecar_session import SERVER, Session, sidecar

from crashguard.runs.files import read_json
from crashguard.sidecar import protocol as p
from crashguard.sidecar.escalation import STOP

TRAINER = CHILDREN / "slow_trainer.py"
GiB = 2**30
HOG_FILL = 0.97  # the hog stops at this share of the limit: past it the kernel would OOM-kill inside the group


class NoRoom(Exception):
    """The group's baseline use leaves no room for the drill's thresholds."""


@dataclass(frozen=True)
class DrillPlan:
    step_seconds: float = 12.0
    steps: int = 3  # the hog arrives early in step 2
    limit: int = 4 * GiB  # the memory group's limit: the drill's machine
    to_limit: int = int(2.4 * GiB)  # bytes from the critical threshold to the limit
    warning_below: int = int(0.4 * GiB)  # the warning threshold this far below critical
    rate_mb: int = 1024  # the hog's growth, MiB/s
    interval_ms: int = 1000  # the configured (quiet-machine) interval


@dataclass
class DrillResult:
    plan: DrillPlan
    baseline_percent: float
    warning: float
    critical: float
    hog_target: int
    samples: list[tuple[float, dict[str, Any]]]  # (arrival, sample)
    actions: list[dict[str, Any]]
    stop: dict[str, Any]
    status: dict[str, Any]
    steps_before_resume: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    resumed_rc: int
    resumed_stderr: str
    final_state: str | None  # the run's state after the resume
    settings_at: float  # wall clock: the drill's thresholds in force
    hog_started: float
    hog_reached: float | None  # None: the hog had not reached its target when it was ended
    hog_signals: str | None
    hog_was_running: bool
    trainer_rc: int | None
    errors: list[str] = field(default_factory=list)

    # -- figures -------------------------------------------------------------------------------------------
    @property
    def critical_index(self) -> int:
        return next(i for i, (_, x) in enumerate(self.samples) if x["ram"]["level"] == "critical")

    @property
    def critical_at(self) -> float:
        """The first critical sample's reading time (wall clock)."""
        return float(self.samples[self.critical_index][1]["time"])

    @property
    def crossing_at(self) -> float:
        """When RAM crossed the critical threshold, interpolated between the last sample below it and the first at
        it (the hog grows linearly)."""
        before, first = self.samples[self.critical_index - 1][1], self.samples[self.critical_index][1]
        threshold = self.critical / 100 * first["ram"]["total"]
        u0, u1 = before["ram"]["used"], first["ram"]["used"]
        t0, t1 = before["time"], first["time"]
        share = (threshold - u0) / (u1 - u0) if u1 > u0 else 1.0
        return float(t0 + min(1.0, max(0.0, share)) * (t1 - t0))

    @property
    def checkpoint(self) -> Path:
        return Path(self.stop["result"]["checkpoint"])

    @property
    def checkpoint_at(self) -> float:
        return self.checkpoint.stat().st_mtime

    def gaps(self, since: float = 0.0, until: float = float("inf")) -> list[float]:
        """Seconds between successive samples (reading times), of the samples read within [since, until]."""
        times = [x["time"] for _, x in self.samples if since <= x["time"] <= until]
        return [b - a for a, b in itertools.pairwise(times)]

    def quiet_gaps(self) -> list[float]:
        """Before the hog started (after the settings update, whose wake takes a sample at once)."""
        return self.gaps(self.settings_at + 0.5, self.hog_started)

    def spike_gaps(self) -> list[float]:
        """From the hog's start to the first critical sample."""
        return self.gaps(self.hog_started, self.critical_at)

    def figures(self) -> dict[str, Any]:
        gaps, quiet, spike = self.gaps(), self.quiet_gaps(), self.spike_gaps()
        return {
            "hog_mib": round(self.hog_target / 2**20),
            "rate_mib_s": self.plan.rate_mb,
            "step_seconds": self.plan.step_seconds,
            "limit_gib": round(self.plan.limit / GiB, 2),
            "warning_percent": self.warning,
            "critical_percent": self.critical,
            "baseline_percent": self.baseline_percent,
            "interval_ms": self.plan.interval_ms,
            "seen_after_crossing_s": round(self.critical_at - self.crossing_at, 3),
            "critical_to_checkpoint_s": round(self.checkpoint_at - self.critical_at, 3),
            "checkpoint_before_hog_at_limit_s": (round(self.hog_reached - self.checkpoint_at, 3)
                                                 if self.hog_reached is not None else None),
            "hog_start_to_limit_s": (round(self.hog_reached - self.hog_started, 3)
                                     if self.hog_reached is not None else None),
            "samples": len(self.samples),
            "quiet_gaps_s": [round(g, 3) for g in quiet],
            "spike_gaps_s": [round(g, 3) for g in spike],
            "gap_max_s": round(max(gaps), 3),
        }


def _steps(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "steps.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _in_group(group: MemoryGroup, argv: list[str]) -> list[str]:
    """`argv`, started inside `group` (the shell joins it, then becomes the program)."""
    return ["sh", "-c", 'echo $$ > "$1" && shift && exec "$@"', "join", str(group.path / "cgroup.procs"), *argv]


async def _until_first_step(session: Session, trainer: subprocess.Popen[str], run_dir: Path) -> None:
    deadline = time.monotonic() + 120
    while not _steps(run_dir):
        assert trainer.poll() is None, trainer.stderr.read() if trainer.stderr else ""
        assert time.monotonic() < deadline, "the run never completed its first step"
        await session.wait_samples(1)


async def run_drill(plan: DrillPlan, group: MemoryGroup, work: Path, server: list[str] | None = None) -> DrillResult:
    """The drill in `group` (its limit is set here), files under `work`, against `server` (the sidecar's command,
    `crashguard serve` by default). Raises NoRoom when the group's use before the spike is already past where the
    warning threshold would go."""
    group.set_limit(plan.limit)
    runs_dir = work / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    run_dir = runs_dir / "slow"
    marker, reached = work / "hog-signals", work / "hog-reached"
    critical = round(100.0 * (plan.limit - plan.to_limit) / plan.limit, 2)
    warning = round(100.0 * (plan.limit - plan.to_limit - plan.warning_below) / plan.limit, 2)
    trainer = group.spawn([sys.executable, str(TRAINER), "--runs-dir", str(runs_dir), "--steps", str(plan.steps),
                           "--step-seconds", str(plan.step_seconds)], env=_env(), stderr=subprocess.PIPE, text=True)
    hog: subprocess.Popen[bytes] | None = None
    try:
        async with sidecar({"runsDirectory": str(runs_dir), "sampleIntervalMs": plan.interval_ms},
                           command=_in_group(group, server or SERVER)) as s:
            await _until_first_step(s, trainer, run_dir)
            ram = (await s.wait_samples(1))[0]["ram"]
            assert ram["limitSource"].startswith("cgroup") and ram["total"] == plan.limit, ram
            if ram["percent"] >= warning - 2:
                raise NoRoom(f"the group already uses {ram['percent']}% of {plan.limit / GiB:.1f} GiB before the "
                             f"spike; the warning threshold would be {warning}%")
            settings_at = time.time()
            await s.request(p.UPDATE_SETTINGS, {"settings": {
                "ramWarningPercent": warning, "ramCriticalPercent": critical, "autoCleanup": True,
                "criticalAction": "checkpointAndStop"}})
            await s.wait_samples(4)  # a quiet stretch at the configured interval, on the new thresholds
            target = int(HOG_FILL * plan.limit) - (await s.wait_samples(1))[0]["ram"]["used"]
            hog = group.spawn(memory_hog.command(target, marker, hold=60.0, rate_mb=plan.rate_mb, reached=reached))
            hog_started = time.time()
            stop = await s.wait_for(p.ACTION, lambda a: a["action"] == STOP, timeout=90)
            trainer_rc = trainer.wait(timeout=60)
            hog_was_running = hog.poll() is None and psutil.Process(hog.pid).status() != psutil.STATUS_STOPPED
            deadline = time.monotonic() + 30
            while not reached.exists() and hog.poll() is None and time.monotonic() < deadline:
                await s.wait_samples(1)
            await s.wait_samples(3)  # sampling goes on after the stop too
            samples = list(s.received[p.SAMPLE])
            actions = s.of(p.ACTION)
    finally:
        for proc in (hog, trainer):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    status = read_json(run_dir / "status.json")
    steps_before = _steps(run_dir)
    # Resume exactly as the crash prompt's Resume does: the recorded command, in its folder.
    command = status["resume_command"]
    resumed = subprocess.run(command["argv"], cwd=command["cwd"], env=_env(), capture_output=True, text=True,
                             timeout=60 + plan.steps * plan.step_seconds * 2)
    started, done = (reached.read_text().split() if reached.exists() else (hog_started, None))
    return DrillResult(plan=plan, baseline_percent=ram["percent"], warning=warning, critical=critical,
                       hog_target=target, samples=samples, actions=actions, stop=stop, status=status,
                       steps_before_resume=steps_before, steps=_steps(run_dir), resumed_rc=resumed.returncode,
                       resumed_stderr=resumed.stderr[-2000:],
                       final_state=(read_json(run_dir / "status.json") or {}).get("state"), settings_at=settings_at,
                       hog_started=float(started),
                       hog_reached=float(done) if done is not None else None,
                       hog_signals=marker.read_text() if marker.exists() else None,
                       hog_was_running=hog_was_running, trainer_rc=trainer_rc)
