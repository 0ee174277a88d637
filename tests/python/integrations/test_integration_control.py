"""Each integration, driven by the real sidecar: a cleanup request and a checkpoint-and-stop are answered; the
recorded resume command continues the run; a kill -9 is reported crashed with its cause; resuming again finishes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from integration_helpers import EXAMPLES, INTEGRATIONS, STEPS_PER_EPOCH, child_env, events, status, steps
from sidecar_session import sidecar

from crashguard.runs.files import read_json
from crashguard.sidecar import protocol as p

EPOCHS = 30  # long enough to be controlled while it runs: 120 steps of a few hundredths of a second each
TOTAL = EPOCHS * STEPS_PER_EPOCH


def length_args(integration: str) -> list[str]:
    size = ["--size", "32"]  # the OOM tests need large activations; these do not
    return [*size, "--steps", str(TOTAL)] if integration == "plain" else [*size, "--epochs", str(EPOCHS)]


async def wait_until(predicate, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the run exited with {proc.returncode}"
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def running_at(run_dir: Path, pid: int, step: int) -> bool:
    found = read_json(run_dir / "status.json")
    return isinstance(found, dict) and found.get("pid") == pid and found.get("state") == "running" \
        and int(found.get("step") or 0) >= step


@pytest.mark.slow
@pytest.mark.parametrize("integration", list(INTEGRATIONS))
async def test_the_sidecar_controls_an_integrated_run_and_its_crash_is_resumed(tmp_path: Path,
                                                                             integration: str) -> None:
    example = EXAMPLES / INTEGRATIONS[integration][0]
    runs, name = tmp_path / "runs", "ctl"
    run_dir = runs / name
    log = (tmp_path / "run.log").open("w")
    first = subprocess.Popen([sys.executable, str(example), "--runs-dir", str(runs), "--name", name,
                              *length_args(integration)], cwd=tmp_path, env=child_env(), stderr=log)
    started: list[subprocess.Popen] = [first]
    try:
        async with sidecar({"runsDirectory": str(runs), "sampleIntervalMs": 250}) as s:
            await wait_until(lambda: running_at(run_dir, first.pid, 1), first)
            cleaned = await s.request(p.CLEANUP, {"runs": [name], "timeoutMs": 30000})
            [answer] = cleaned["runs"]
            assert answer["ok"] and answer["pid"] == first.pid and answer["report"]["pid"] == first.pid, answer

            stopped = await s.request(p.STOP_RUN, {"run": name, "timeoutMs": 30000})
            assert stopped["ok"] and stopped["state"] == "stopped" and not stopped["signalled"], stopped
            assert first.wait(timeout=30) == 0
            at_stop = status(run_dir)
            assert Path(at_stop["checkpoint"]).is_file() and 0 < at_stop["step"] < TOTAL
            [info] = (await s.request(p.RUNS, {}))["runs"]
            command = info["resumeCommand"]
            assert command["argv"][0] == sys.executable and "--resume" in command["argv"]
            assert command["cwd"] == str(tmp_path)

            # Resume as the crash prompt does (that argv, in that cwd), then kill -9 it part-way.
            second = subprocess.Popen(command["argv"], cwd=command["cwd"], env=child_env(), stderr=log)
            started.append(second)
            logged = len(steps(run_dir))  # the status is written at most once a second: watch the step log
            await wait_until(lambda: len(steps(run_dir)) >= logged + 2, second)
            os.kill(second.pid, signal.SIGKILL)
            crashed = await s.wait_for(p.RUN_EVENT, lambda e: e["event"] == "crashed", timeout=30)
            assert crashed["run"]["name"] == name and crashed["run"]["pid"] == second.pid
            assert status(run_dir)["step"] < TOTAL  # killed part-way
            # The watchdog read the exit status before this test reaped the process.
            await wait_until_marked(run_dir)
            assert status(run_dir)["exit_cause"] == "killed by signal 9 (SIGKILL)"
            assert second.wait(timeout=10) == -signal.SIGKILL
            [info] = (await s.request(p.RUNS, {}))["runs"]
            assert info["state"] == "crashed" and info["exitCause"] == "killed by signal 9 (SIGKILL)"
            assert info["resumeCommand"]["argv"] == command["argv"]

            third = await asyncio.to_thread(subprocess.run, info["resumeCommand"]["argv"],
                                            cwd=info["resumeCommand"]["cwd"], env=child_env(), stderr=log,
                                            timeout=240)
            assert third.returncode == 0
        final = status(run_dir)
        assert final["state"] == "finished" and final["step"] == TOTAL
        logged = {s["step"] for s in steps(run_dir)}
        assert logged == set(range(1, TOTAL + 1))  # every step ran (some twice: after the crash, from the checkpoint)
        assert any(e["event"] == "checkpoint" for e in events(run_dir))  # the run's own history
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        log.close()
        print((tmp_path / "run.log").read_text()[-3000:])


async def wait_until_marked(run_dir: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while status(run_dir)["state"] != "crashed":
        assert time.monotonic() < deadline, status(run_dir)
        await asyncio.sleep(0.05)
