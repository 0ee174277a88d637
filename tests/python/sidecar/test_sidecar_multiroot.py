"""One sidecar, several runs directories (one per workspace folder, contract 7): runs of every folder are seen,
a folder added later is a baseline, and a stop names the run's folder so a namesake elsewhere is never touched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pygls.exceptions import JsonRpcInvalidParams
from sidecar_session import sidecar
from trainer_helpers import TRAINER, wait_registered

from crashguard.sidecar import protocol as p


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "folder-a" / "runs", tmp_path / "folder-b" / "runs"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    return a, b


@pytest.fixture
def trainers(tmp_path: Path) -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def _train(started: list[subprocess.Popen], runs_dir: Path, name: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(TRAINER), "--runs-dir", str(runs_dir), "--name", name, "--mb", "10"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started.append(proc)
    wait_registered(runs_dir, name, proc.pid)
    return proc


async def test_runs_of_every_folder_and_a_stop_that_names_the_folder(
        folders: tuple[Path, Path], trainers: list[subprocess.Popen]) -> None:
    a, b = folders
    in_a = _train(trainers, a, "brats")
    in_b = _train(trainers, b, "brats")  # the same name in the other folder
    async with sidecar({"runsDirectories": [str(a)], "sampleIntervalMs": 200}) as s:
        listed = (await s.request(p.RUNS, {}))["runs"]
        assert [(r["dir"], r["pid"]) for r in listed] == [(str(a / "brats"), in_a.pid)]

        await s.request(p.UPDATE_SETTINGS, {"settings": {"runsDirectories": [str(a), str(b)]}})
        listed = (await s.request(p.RUNS, {}))["runs"]
        assert sorted((r["dir"], r["pid"]) for r in listed) == sorted(
            [(str(a / "brats"), in_a.pid), (str(b / "brats"), in_b.pid)])
        await s.wait_samples(3)
        # The added folder's runs were there before: a baseline, not a burst of "started".
        assert s.of(p.RUN_EVENT) == []

        ambiguous = await s.request(p.STOP_RUN, {"run": "brats", "timeoutMs": 1000})
        assert not ambiguous["ok"] and "several runs directories" in ambiguous["message"]
        stopped = await s.request(p.STOP_RUN, {"run": "brats", "dir": str(b / "brats"), "timeoutMs": 15000})
        assert stopped["ok"] and stopped["state"] == "stopped", stopped
        assert in_b.wait(timeout=15) == 0
        assert in_a.poll() is None  # the namesake in folder A runs on

        os.kill(in_a.pid, signal.SIGKILL)
        crashed = await s.wait_for(p.RUN_EVENT, lambda e: e["event"] == "crashed")
        assert crashed["run"]["dir"] == str(a / "brats")

        with pytest.raises(JsonRpcInvalidParams, match="runsDirectories"):
            await s.request(p.UPDATE_SETTINGS, {"settings": {"runsDirectories": ["relative/runs"]}})
        with pytest.raises(JsonRpcInvalidParams, match="dir"):
            await s.request(p.STOP_RUN, {"run": "brats", "dir": "brats"})
        unknown = await s.request(p.STOP_RUN, {"run": "brats", "dir": str(a.parent / "elsewhere" / "brats")})
        assert not unknown["ok"] and "no run named" in unknown["message"]


async def test_no_runs_directory_watches_nothing(tmp_path: Path) -> None:
    async with sidecar({"runsDirectories": [], "sampleIntervalMs": 200}, cwd=str(tmp_path)) as s:
        (tmp_path / "runs").mkdir()
        assert (await s.request(p.RUNS, {}))["runs"] == []
        assert (await s.wait_samples(1))[0]["runs"] == []
