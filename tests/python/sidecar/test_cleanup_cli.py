"""`crashguard cleanup` (the "Emergency Cleanup" task) reaches a real registered run and reports what it freed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from trainer_helpers import StartTrainer

MIB = 2**20


def _cleanup(runs_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crashguard", "cleanup", "--runs-dir", str(runs_dir), *extra],
                          capture_output=True, text=True, timeout=60)


def test_cleanup_reaches_a_registered_run(runs_dir: Path, start_trainer: StartTrainer) -> None:
    child = start_trainer("holder", mb=300, hold="gc")
    result = _cleanup(runs_dir, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    (entry,) = data["runs"]
    assert entry["run"] == "holder" and entry["pid"] == child.pid and entry["ok"] is True
    assert entry["report"]["rssFreed"] > 250 * MIB  # measured inside the run
    assert entry["rssBefore"] - entry["rssAfter"] > 250 * MIB  # and from outside
    assert child.poll() is None  # cleanup never stops the run
    assert data["sidecar"]["steps"][0]["name"] == "gc.collect"


def test_cleanup_text_report(runs_dir: Path, start_trainer: StartTrainer) -> None:
    start_trainer("holder", mb=100, hold="cache")
    result = _cleanup(runs_dir)
    assert result.returncode == 0, result.stderr
    assert "run holder (pid" in result.stdout and "freed" in result.stdout
    assert "this process (pid" in result.stdout


def test_cleanup_without_runs(runs_dir: Path) -> None:
    result = _cleanup(runs_dir)
    assert result.returncode == 0, result.stderr
    assert "no live registered runs" in result.stdout
