"""sample-data and check-data from the command line; --resume never on a run that has checkpoints; run names; a
planted link in the run folder; the watchdog where no supervisor of ours records a crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from training_helpers import child_env, crashguard

from crashguard.runs.files import read_json


def test_sample_data_then_check_data(tmp_path: Path) -> None:
    made = crashguard("sample-data", "--cases", "4", "--size", "24", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    task = tmp_path / "data" / "Task01_BrainTumour"  # the default location the preset points at
    meta = json.loads((task / "dataset.json").read_text())
    assert meta["numTraining"] == 4 and len(list((task / "imagesTr").glob("*.nii.gz"))) == 4
    checked = crashguard("check-data", cwd=tmp_path)
    assert checked.returncode == 0 and checked.stdout == ""
    assert "4 cases, 0 problems" in checked.stderr
    bad = crashguard("sample-data", "--cases", "1", "--out", str(tmp_path / "x"), cwd=tmp_path)
    assert bad.returncode == 2 and "at least 2" in bad.stderr


@pytest.mark.slow
def test_resume_never_refuses_existing_checkpoints(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    config = write_config(train={"epochs": 1})
    first = crashguard("train", "--config", str(config), "--runs-dir", "runs", "--no-supervise", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    again = crashguard("train", "--config", str(config), "--runs-dir", "runs", "--resume", "never", cwd=tmp_path)
    assert again.returncode == 2
    assert "already has checkpoints" in again.stderr.strip().splitlines()[-1]
    done = crashguard("train", "--config", str(config), "--runs-dir", "runs", cwd=tmp_path)  # auto: nothing left
    assert done.returncode == 0 and "already complete at step 2" in done.stderr


def test_a_run_name_that_is_a_path_is_refused_before_anything_is_written(
        tmp_path: Path, write_config: Callable[..., Path]) -> None:
    config = write_config(train={"epochs": 1})
    for name in ("../escape", "a/b", ".hidden", "-flag"):
        refused = crashguard("train", "--config", str(config), "--runs-dir", "runs", "--run-name", name, cwd=tmp_path)
        assert refused.returncode == 2 and "--run-name" in refused.stderr, refused.stderr[-500:]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "escape").exists()


@pytest.mark.slow
def test_a_planted_event_log_link_refuses_the_run_and_writes_nothing_through_it(
        tmp_path: Path, write_config: Callable[..., Path]) -> None:
    config = write_config(train={"epochs": 1})
    target = tmp_path / "bashrc"
    target.write_text("export PATH=...\n")
    run_dir = tmp_path / "runs" / "tiny"
    run_dir.mkdir(parents=True)
    (run_dir / "events.jsonl").symlink_to(target)  # as a cloned repository could carry it
    refused = crashguard("train", "--config", str(config), "--runs-dir", "runs", "--no-supervise", cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr[-2000:]
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("crashguard train: ") and "events.jsonl is a symlink (not followed)" in last
    assert target.read_text() == "export PATH=...\n" and not (run_dir / "status.json").exists()


def _watchdogs_of(pid: int) -> list[psutil.Process]:
    return [c for c in psutil.Process(pid).children() if "crashguard.runs.watchdog" in " ".join(c.cmdline())]


def _status_when(run_dir: Path, process: subprocess.Popen[str], predicate: Callable[[dict], bool]) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else "exited"
        status = read_json(run_dir / "status.json")
        if isinstance(status, dict) and predicate(status):
            return status
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.mark.slow
def test_a_watchdog_records_a_crash_only_where_no_supervisor_of_ours_does(
        tmp_path: Path, write_config: Callable[..., Path]) -> None:
    config = write_config(train={"epochs": 50}, checkpoint={"every_steps": 100, "keep": 1})
    started: list[subprocess.Popen[str]] = []

    def train(name: str, *extra: str) -> subprocess.Popen[str]:
        process = subprocess.Popen([sys.executable, "-m", "crashguard", "train", "--config", str(config),
                                    "--runs-dir", "runs", "--run-name", name, "--no-progress", *extra],
                                   cwd=tmp_path, env=child_env(), stderr=subprocess.PIPE, text=True)
        started.append(process)
        return process

    try:
        supervised = train("supervised")
        status = _status_when(tmp_path / "runs" / "supervised", supervised, lambda s: s.get("step", 0) >= 1)
        assert status["pid"] != supervised.pid and _watchdogs_of(status["pid"]) == []  # the supervisor records it
        supervised.send_signal(signal.SIGTERM)
        assert supervised.wait(timeout=60) == 0

        alone = train("alone", "--no-supervise")
        status = _status_when(tmp_path / "runs" / "alone", alone, lambda s: s.get("step", 0) >= 1)
        assert status["pid"] == alone.pid and len(_watchdogs_of(alone.pid)) == 1
        os.kill(alone.pid, signal.SIGKILL)  # what the kernel's OOM killer does; no supervisor of ours is there
        deadline = time.monotonic() + 30
        while (read_json(tmp_path / "runs" / "alone" / "status.json") or {}).get("state") != "crashed":
            assert time.monotonic() < deadline, "the watchdog did not mark the run crashed"
            time.sleep(0.1)
        crashed = read_json(tmp_path / "runs" / "alone" / "status.json")
        assert crashed["exit_cause"] == "killed by signal 9 (SIGKILL)"  # read from the unreaped zombie
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)


@pytest.mark.slow
def test_a_config_with_the_old_threshold_names_trains_and_says_so_once(
        tmp_path: Path, write_config: Callable[..., Path]) -> None:
    config = write_config(train={"epochs": 1, "max_steps": 1}, memory={"ram_warning": 0.8, "ram_critical": 0.9})
    done = crashguard("train", "--config", str(config), "--runs-dir", "runs", cwd=tmp_path)  # supervised
    assert done.returncode == 0, done.stderr[-2000:]
    notes = [line for line in done.stderr.splitlines() if "is deprecated" in line]
    assert notes == [f"crashguard: {config}: memory.ram_warning is deprecated: rename it to memory.log_ram_fraction "
                     "(same meaning, a fraction of the machine's RAM)",
                     f"crashguard: {config}: memory.ram_critical is deprecated: rename it to "
                     "memory.backoff_ram_fraction (same meaning, a fraction of the machine's RAM)"]
