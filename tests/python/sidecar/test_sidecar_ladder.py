"""The escalation ladder with real processes: an unregistered memory hog pushes RAM past warning and critical, and
the registered run is cleaned up, then checkpointed and stopped (urgent) while the hog is never signalled; a run
that answers nothing still gets its stop, then SIGTERM, and a forged registration is never touched."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import time
from pathlib import Path

import memory_hog
import psutil
import pytest
from sidecar_session import sidecar
from trainer_helpers import StartTrainer

from crashguard.runs.control import cleanup_runs, stop_run
from crashguard.runs.registry import Registry
from crashguard.sidecar import protocol as p
from crashguard.sidecar.escalation import CLEANUP, STOP, TERMINATE, Escalation, Observation, Timings
from crashguard.sidecar.levels import Level
from crashguard.sidecar.settings import Settings
from crashguard.util.json_io import write_json_atomic

MiB = 2**20
MAX_HOG = 3 * 2**30  # never more than this, whatever the machine's use


def _requests(path: Path) -> list[dict]:
    """The distinct control requests a trainer child recorded (it records them at every step until handled)."""
    seen: dict[str, dict] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        request = json.loads(line)
        seen[request["id"]] = request
    return list(seen.values())


@pytest.mark.slow
async def test_a_hog_pushes_ram_critical_the_run_is_cleaned_then_stopped_urgently_and_the_hog_never_signalled(
        runs_dir: Path, start_trainer: StartTrainer, tmp_path: Path) -> None:
    recorded = tmp_path / "requests.jsonl"
    trainer = start_trainer("guarded", mb=50, record_requests=recorded)
    interval = 0.25
    async with sidecar({"runsDirectory": str(runs_dir), "sampleIntervalMs": int(interval * 1000)}) as s:
        [first] = await s.wait_samples(1)
        ram = first["ram"]
        # Thresholds a few points above current use: warning at +2 points, critical at +4 (~1 GB here).
        warning = round(ram["percent"] + 2, 1)
        critical = round(ram["percent"] + 4, 1)
        if critical > 98:
            pytest.skip(f"RAM already at {ram['percent']}%: no room for the drill")
        target = int((critical + 2) / 100 * ram["total"]) - ram["used"]
        if target > MAX_HOG:
            pytest.skip(f"reaching critical needs {target / 2**30:.1f} GiB here (more than the test may take)")
        await s.request(p.UPDATE_SETTINGS, {"settings": {
            "ramWarningPercent": warning, "ramCriticalPercent": critical, "autoCleanup": True,
            "criticalAction": "checkpointAndStop"}})
        marker = tmp_path / "hog-signals"
        hog = subprocess.Popen(memory_hog.command(target, marker))  # +200 MiB/s, unregistered
        try:
            stop = await s.wait_for(p.ACTION, lambda a: a["action"] == STOP, timeout=60)
            stopped_at = time.monotonic()
            assert trainer.wait(timeout=15) == 0
            assert hog.poll() is None and psutil.Process(hog.pid).status() != psutil.STATUS_STOPPED
        finally:
            hog.kill()
            hog.wait()
        assert not marker.exists(), f"the hog was signalled: {marker.read_text()}"

        # The run was cleaned first (it answered at its next step), then stopped with a checkpoint.
        actions = [a["action"] for a in s.of(p.ACTION)]
        assert actions == [CLEANUP, STOP], actions
        cleanup = s.of(p.ACTION)[0]
        assert [(r["run"], r["ok"]) for r in cleanup["result"]["runs"]] == [("guarded", True)]
        assert stop["result"]["run"] == "guarded" and stop["result"]["ok"], stop
        assert not stop["result"]["signalled"] and Path(stop["result"]["checkpoint"]).is_file()
        assert "RAM critical" in stop["reason"] and "guarded used the most (PSS" in stop["reason"]
        sent = _requests(recorded)
        assert [(r["action"], r["urgent"]) for r in sent] == [("cleanup", False), ("checkpoint_and_stop", True)]
        assert [w["level"] for w in s.of(p.WARNING)][:2] in (["warning", "critical"], ["critical"])

        # Timing: from the first critical sample to the stop's report (the checkpoint is written before it).
        critical_at = next(t for t, x in s.received[p.SAMPLE] if x["ram"]["level"] == "critical")
        arrivals = [t for t, _ in s.received[p.SAMPLE]]
        gaps = [b - a for a, b in itertools.pairwise(arrivals[1:])]
        print(f"\nhog grew {target / MiB:.0f} MiB; critical -> checkpoint-and-stop reported "
              f"{stopped_at - critical_at:.2f} s; {len(arrivals)} samples, max gap {max(gaps):.3f} s at "
              f"{interval} s")
        assert stopped_at - critical_at < 15.0  # critical cleanup wait (5 s) + settle + a step + the checkpoint
        assert max(gaps) < 4 * interval


async def test_a_run_that_answers_nothing_is_stopped_then_sigtermed_and_a_forged_run_is_never_touched(
        runs_dir: Path, start_trainer: StartTrainer, tmp_path: Path) -> None:
    recorded = tmp_path / "requests.jsonl"
    deaf = start_trainer("deaf", mb=50, no_poll=True, record_requests=recorded)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        # A forged registration: a live process of ours, but not the one that registered (create time differs).
        ctime = psutil.Process(sleeper.pid).create_time()
        write_json_atomic(runs_dir / "forged" / "status.json", {
            "name": "forged", "pid": sleeper.pid, "create_time": ctime - 500, "state": "running",
            "updated": time.time(), "step": 1})
        reports: list[tuple[str, str, object]] = []
        escalation = Escalation(
            lambda action, reason, result: reports.append((action, reason, result)),
            lambda timeout: cleanup_runs(runs_dir, timeout=timeout, own_cleanup=False),
            lambda run, run_dir, timeout, urgent: stop_run(runs_dir, run, timeout=timeout, urgent=urgent),
            lambda: Registry(runs_dir).infos(),
            Timings(critical_cleanup_timeout=1.0, settle=0.1, stop_timeout=2.0))
        settings = Settings(critical_action="checkpointAndStop")
        deadline = time.monotonic() + 30
        try:
            while not any(a == TERMINATE for a, _, _ in reports):
                assert time.monotonic() < deadline, reports
                escalation.on_sample([Observation("RAM", Level.CRITICAL, 95.0, 80.0, 90.0)], settings)
                await asyncio.sleep(0.1)
        finally:
            escalation.close()
        assert [a for a, _, _ in reports] == [CLEANUP, STOP, TERMINATE]
        cleanup, stop = reports[0][2], reports[1][2]
        assert [(r.run, r.ok) for r in cleanup.runs] == [("deaf", False)]  # type: ignore[attr-defined]
        assert "no answer" in cleanup.runs[0].error  # type: ignore[attr-defined]
        assert stop.signalled and stop.ok and stop.state == "stopped", stop  # type: ignore[attr-defined]
        assert deaf.wait(timeout=10) == 0  # SIGTERM became a checkpoint-and-stop in the run
        sent = _requests(recorded)
        assert {(r["action"], r["urgent"]) for r in sent} == {("cleanup", False), ("checkpoint_and_stop", True)}
        assert sleeper.poll() is None and psutil.Process(sleeper.pid).status() != psutil.STATUS_STOPPED
        assert not (runs_dir / "forged" / "control").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
