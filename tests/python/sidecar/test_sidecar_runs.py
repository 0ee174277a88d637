"""Runs across processes, through the real sidecar: cleanup that reaches a real child and frees its memory,
checkpoint-and-stop, the SIGTERM fallback, forged registrations that are never touched, crashed runs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from sidecar_session import SERVER, sidecar
from trainer_helpers import StartTrainer

from crashguard.sidecar import protocol as p
from crashguard.util.json_io import write_json_atomic

MiB = 2**20


def _settings(runs_dir: Path, **extra: object) -> dict:
    return {"runsDirectory": str(runs_dir), "sampleIntervalMs": 250, **extra}


@pytest.mark.parametrize("hold", ["gc", "cache"])
async def test_cleanup_request_reaches_a_child_and_it_frees_its_memory(
        runs_dir: Path, start_trainer: StartTrainer, hold: str) -> None:
    child = start_trainer("big", mb=300, hold=hold)
    rss_before = psutil.Process(child.pid).memory_info().rss
    assert rss_before > 300 * MiB
    async with sidecar(_settings(runs_dir)) as s:
        listed = (await s.request(p.RUNS, {}))["runs"]
        assert [(r["name"], r["pid"], r["state"], r["alive"]) for r in listed] == [("big", child.pid, "running", True)]
        assert listed[0]["treeRss"] > 300 * MiB

        result = await s.request(p.CLEANUP, {"timeoutMs": 15000})
        [run] = result["runs"]
        assert run["ok"] and run["error"] is None and run["pid"] == child.pid, run
        report = run["report"]
        # Measured inside the child, by the child:
        assert report["pid"] == child.pid
        assert report["rssFreed"] > 250 * MiB, report
        assert report["rssBefore"] - report["rssAfter"] == report["rssFreed"]
        freeing_step = "gc.collect" if hold == "gc" else "drop cached batches"
        step = next(x for x in report["steps"] if x["name"] == freeing_step)
        assert step["done"] and step["freed"] > 250 * MiB
        # ... and from outside, by the sidecar:
        assert run["rssBefore"] - run["rssAfter"] > 250 * MiB
        assert result["sidecar"]["pid"] == s.pid
        assert {"ramBefore", "ramAfter", "freed"} <= set(result)

    assert child.poll() is None  # cleanup does not stop the run
    assert psutil.Process(child.pid).memory_info().rss < rss_before - 250 * MiB
    assert not list((runs_dir / "big" / "control").glob("*.json"))  # request and answer consumed


async def test_checkpoint_and_stop_ends_a_registered_child_gracefully(
        runs_dir: Path, start_trainer: StartTrainer) -> None:
    child = start_trainer("brats-safe", mb=10)
    async with sidecar(_settings(runs_dir)) as s:
        await s.wait_samples(2)
        result = await s.request(p.STOP_RUN, {"run": "brats-safe", "timeoutMs": 15000})
        assert result["ok"] and result["state"] == "stopped" and not result["signalled"], result
        assert Path(result["checkpoint"]).is_file()
        assert json.loads(Path(result["checkpoint"]).read_text())["step"] > 0
        assert child.wait(timeout=10) == 0
        event = await s.wait_for(p.RUN_EVENT, lambda e: e["event"] == "stopped")
        assert event["run"]["name"] == "brats-safe" and "checkpoint" in event["message"]
        again = await s.request(p.STOP_RUN, {"run": "brats-safe"})
        assert not again["ok"] and again["state"] == "stopped" and "not running" in again["message"]


async def test_a_run_that_does_not_answer_gets_sigterm_and_still_checkpoints(
        runs_dir: Path, start_trainer: StartTrainer) -> None:
    child = start_trainer("hung", mb=10, no_poll=True)
    async with sidecar(_settings(runs_dir)) as s:
        stopping = asyncio.ensure_future(s.request(p.STOP_RUN, {"run": "hung", "timeoutMs": 2000}))
        await asyncio.sleep(0.3)
        # While the sidecar waits on the run, other requests are still answered.
        status = await s.request(p.STATUS, {})
        assert not stopping.done() and status["runs"][0]["name"] == "hung"
        result = await stopping
        assert result["signalled"] and result["ok"] and result["state"] == "stopped", result
        assert child.wait(timeout=10) == 0


def _forge(runs_dir: Path, name: str, pid: int, create_time: float) -> Path:
    run_dir = runs_dir / name
    write_json_atomic(run_dir / "status.json", {"version": 1, "name": name, "pid": pid, "create_time": create_time,
                                               "state": "running", "step": 5, "updated": time.time()})
    return run_dir


# A stand-in for the editor: the sidecar's parent, sharing its stdin/stdout (like the extension host).
EDITOR = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


async def test_forged_registrations_are_never_signalled_and_get_no_control_file(runs_dir: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "120"])
    try:
        sleeper_ctime = psutil.Process(sleeper.pid).create_time()
        wrong = _forge(runs_dir, "wrong-ctime", sleeper.pid, sleeper_ctime - 1000.0)  # live pid, other process
        async with sidecar(_settings(runs_dir, sampleIntervalMs=200),
                           command=[sys.executable, "-c", EDITOR, *SERVER]) as s:
            editor = psutil.Process(s.pid)
            # The sidecar's parent, with its true create time: a perfect forgery, still refused.
            fake_editor = _forge(runs_dir, "the-editor", editor.pid, editor.create_time())
            await s.wait_samples(3)
            runs = {r["name"]: r for r in (await s.request(p.RUNS, {}))["runs"]}
            assert {n: (r["alive"], r["state"]) for n, r in runs.items()} == {
                "wrong-ctime": (False, "crashed"), "the-editor": (False, "crashed")}
            assert "not a Crash Guard run" in runs["the-editor"]["exitCause"]

            cleanup = await s.request(p.CLEANUP, {"timeoutMs": 1000}, timeout=10)
            assert cleanup["runs"] == []  # nobody live to ask
            named = await s.request(p.CLEANUP, {"runs": ["wrong-ctime", "the-editor"], "timeoutMs": 1000},
                                    timeout=10)
            assert [r["ok"] for r in named["runs"]] == [False, False]
            for name in ("wrong-ctime", "the-editor"):
                # (if the editor were signalled, the client would lose the server: time out, not hang)
                stop = await s.request(p.STOP_RUN, {"run": name, "timeoutMs": 500}, timeout=10)
                assert not stop["ok"] and not stop["signalled"], stop
            assert editor.is_running() and editor.status() != psutil.STATUS_ZOMBIE
        for run_dir in (wrong, fake_editor):
            assert not (run_dir / "control").exists(), f"a control file was written for {run_dir.name}"
        assert sleeper.poll() is None and psutil.Process(sleeper.pid).status() != psutil.STATUS_STOPPED
    finally:
        sleeper.kill()
        sleeper.wait()


async def test_a_killed_run_is_reported_crashed(runs_dir: Path, start_trainer: StartTrainer) -> None:
    async with sidecar(_settings(runs_dir, sampleIntervalMs=200)) as s:
        await s.wait_samples(2)
        child = start_trainer("doomed", mb=10)  # appears while the sidecar watches
        started = await s.wait_for(p.RUN_EVENT, lambda e: e["event"] == "started")
        assert started["run"]["pid"] == child.pid and started["run"]["alive"]
        os.kill(child.pid, signal.SIGKILL)
        # Not yet reaped (a zombie) already counts as gone.
        event = await s.wait_for(p.RUN_EVENT, lambda e: e["event"] == "crashed")
        assert event["run"]["name"] == "doomed" and "stopped unexpectedly" in event["message"]
        assert child.wait(timeout=10) == -signal.SIGKILL
        [run] = (await s.request(p.RUNS, {}))["runs"]
        assert (run["state"], run["alive"]) == ("crashed", False)
        assert run["exitCause"].startswith("unknown")

        # The supervisor of the train command records the cause: the sidecar passes it on.
        status_file = runs_dir / "doomed" / "status.json"
        status = json.loads(status_file.read_text())
        write_json_atomic(status_file, {**status, "state": "crashed", "exit_cause": "killed by signal 9 (SIGKILL)"})
        [run] = (await s.request(p.RUNS, {}))["runs"]
        assert (run["state"], run["exitCause"]) == ("crashed", "killed by signal 9 (SIGKILL)")


@pytest.mark.slow
async def test_auto_cleanup_on_warning_then_stop_of_the_heaviest_run_on_critical(
        runs_dir: Path, start_trainer: StartTrainer) -> None:
    big = start_trainer("big", mb=300, hold="cache")
    small = start_trainer("small", mb=10)
    async with sidecar(_settings(runs_dir, autoCleanup=True, sampleIntervalMs=200)) as s:
        await s.wait_samples(2)
        # Warning: every live run is asked to clean up.
        await s.request(p.UPDATE_SETTINGS, {"settings": {"ramWarningPercent": 1}})
        action = await s.wait_for(p.ACTION, lambda a: a["action"] == "cleanup", timeout=30)
        assert action["reason"].startswith("RAM warning")
        by_name = {r["run"]: r for r in action["result"]["runs"]}
        assert set(by_name) == {"big", "small"} and all(r["ok"] for r in by_name.values())
        assert by_name["big"]["report"]["rssFreed"] > 250 * MiB
        assert big.poll() is None and small.poll() is None

    big2 = start_trainer("big2", mb=300, hold="pinned")  # memory in use: cleanup cannot free it
    async with sidecar(_settings(runs_dir, criticalAction="checkpointAndStop", sampleIntervalMs=200)) as s:
        await s.wait_samples(2)
        await s.request(p.UPDATE_SETTINGS, {"settings": {"ramWarningPercent": 1, "ramCriticalPercent": 1}})
        action = await s.wait_for(p.ACTION, lambda a: a["action"] == "checkpointAndStop", timeout=60)
        # The ladder cleans up first (even without autoCleanup), then stops the heaviest run, once.
        assert [a["action"] for a in s.of(p.ACTION)] == ["cleanup", "checkpointAndStop"]
        assert action["result"]["run"] == "big2" and action["result"]["ok"], action
        assert big2.wait(timeout=10) == 0
        assert big.poll() is None and small.poll() is None  # only the heaviest run was stopped
        assert [w["level"] for w in s.of(p.WARNING)][:1] == ["critical"]
