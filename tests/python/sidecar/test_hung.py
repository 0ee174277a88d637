"""Hung runs: the hook publishes a typical step time, a live run whose status stops changing for 10 x that (at
least the floor) is `hung`, and a real trainer frozen with SIGSTOP is reported hung, then recovered after SIGCONT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sidecar_session import sidecar
from trainer_helpers import StartTrainer

from crashguard.runs.files import read_json
from crashguard.runs.hook import RunHook
from crashguard.runs.registry import Registry
from crashguard.runs.stall import STEP_FACTOR, hung_after, stalled_seconds, typical_step
from crashguard.sidecar import protocol as p
from crashguard.util.json_io import write_json_atomic


def test_the_hung_threshold_is_many_typical_steps_and_never_below_the_floor() -> None:
    assert hung_after(None, 120) == 120  # no step time yet: the floor
    assert hung_after(2.0, 120) == 120
    assert hung_after(15.0, 120) == 15.0 * STEP_FACTOR == 150
    for bad in ("15", float("nan"), float("inf"), -3.0, 0, True, [1]):  # a status file is only a claim
        assert typical_step(bad) is None and hung_after(bad, 120) == 120
    assert stalled_seconds(100.0, 130.0) == 30.0
    assert stalled_seconds(200.0, 130.0) == 0.0  # in the future: just written
    for bad in (None, "x", float("nan"), 0, -1):
        assert stalled_seconds(bad, 130.0) is None


def test_the_hook_publishes_an_average_step_time(tmp_path: Path) -> None:
    hook = RunHook("timed", runs_dir=tmp_path, write_interval=0.0)
    hook.start()
    hook.update(step=0)  # the baseline: the time before the first step is set-up, not a step
    for step in range(1, 6):
        time.sleep(0.05)
        hook.update(step=step)
    status = read_json(tmp_path / "timed" / "status.json")
    assert 0.04 <= status["step_seconds"] < 0.5, status
    hook.update(step=5, loss=0.1)  # the same step again changes nothing
    time.sleep(0.3)
    hook.update(step=7)  # two steps at once: 0.15 s each, folded into the average
    after = read_json(tmp_path / "timed" / "status.json")["step_seconds"]
    assert status["step_seconds"] < after < 0.15


def test_a_live_run_whose_status_is_old_is_hung_and_a_finished_one_never_is(tmp_path: Path) -> None:
    # One real process registers four runs (each holds its lock: the proof a status file alone cannot give);
    # their status files are then aged by hand.
    names = ("slow-steps", "stuck", "fresh", "done")
    script = ("import sys, time; from crashguard.runs.hook import RunHook\n"
              f"hooks = [RunHook(n, runs_dir={str(tmp_path)!r}) for n in {names!r}]\n"
              "[h.start() for h in hooks]\nprint('ready', flush=True)\ntime.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        now = time.time()
        for name, updated, step_seconds, state in [("slow-steps", now - 130, 15.0, "running"),
                                                   ("stuck", now - 130, 0.5, "running"),
                                                   ("fresh", now - 1, 0.5, "running"),
                                                   ("done", now - 1000, 0.5, "finished")]:
            status = read_json(tmp_path / name / "status.json")
            status.update(state=state, updated=updated, step_seconds=step_seconds)
            write_json_atomic(tmp_path / name / "status.json", status)
        runs = {r.name: r for r in Registry(tmp_path).infos(hung_floor=120)}
        assert {n: r.state for n, r in runs.items()} == {
            "slow-steps": "running",  # 130 s < 10 x 15 s
            "stuck": "hung", "fresh": "running", "done": "finished"}
        assert 129 <= runs["stuck"].stalled_seconds <= 140 and runs["stuck"].step_seconds == 0.5
        assert runs["done"].stalled_seconds is None
    finally:
        child.kill()
        child.wait()


@pytest.mark.slow
async def test_a_trainer_frozen_with_sigstop_is_reported_hung_and_recovers_after_sigcont(
        runs_dir: Path, start_trainer: StartTrainer) -> None:
    child = start_trainer("frozen", mb=10)  # a step every 0.1 s; its status is written at most once a second
    floor, interval = 3.0, 0.25
    async with sidecar({"runsDirectory": str(runs_dir), "sampleIntervalMs": int(interval * 1000),
                        "hungAfterSeconds": floor}) as s:
        await s.wait_for(p.SAMPLE, lambda x: x["runs"] and x["runs"][0]["stepSeconds"] is not None)
        [run] = (await s.request(p.RUNS, {}))["runs"]
        assert run["state"] == "running" and 0.05 < run["stepSeconds"] < 1.0, run
        assert 0 <= run["stalledSeconds"] < 2.5
        os.kill(child.pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            event = await s.wait_for(p.RUN_EVENT, lambda e: e["event"] == "hung", timeout=floor + 15)
            took = time.monotonic() - frozen_at
            # Its last write was at most ~1.1 s before the freeze: hung after the floor, seen at the next sample.
            print(f"\nfrozen run reported hung {took:.2f} s after SIGSTOP (floor {floor} s, sample {interval} s)")
            assert took <= floor + 2 * interval + 1.0
            assert event["run"]["state"] == "hung" and event["run"]["alive"]
            assert event["run"]["stalledSeconds"] >= floor  # (rounded to 0.1 s)
            assert event["message"].startswith("Run frozen may be hung at step") and "no progress for" in \
                event["message"]
            sample = await s.wait_samples(1)
            assert sample[0]["runs"][0]["state"] == "hung"
        finally:
            os.kill(child.pid, signal.SIGCONT)
        resumed_at = time.monotonic()
        event = await s.wait_for(p.RUN_EVENT, lambda e: e["event"] == "recovered", timeout=15)
        print(f"recovered {time.monotonic() - resumed_at:.2f} s after SIGCONT")
        assert event["run"]["state"] == "running" and event["message"].startswith("Run frozen is making progress")
        assert [e["event"] for e in s.of(p.RUN_EVENT)] == ["hung", "recovered"]  # no crash, no restart
        assert child.poll() is None
