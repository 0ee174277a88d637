"""The monitor and cleanup commands, run as a user would: real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import psutil

CLI = [sys.executable, "-m", "crashguard"]


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def test_monitor_once_prints_one_screen() -> None:
    result = _run("monitor", "--once")
    assert result.returncode == 0, result.stderr
    assert "RAM" in result.stdout and "Swap" in result.stdout and "GPU" in result.stdout
    assert "Heaviest processes" in result.stdout
    assert "\033[" not in result.stdout  # no colour codes when stdout is not a terminal


def test_monitor_json_is_jsonl_close_to_psutil() -> None:
    result = _run("monitor", "--json", "--count", "3", "--interval", "0.1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3
    samples = [json.loads(line) for line in lines]
    assert samples[0]["time"] < samples[-1]["time"]
    reference = psutil.virtual_memory().percent
    assert abs(samples[-1]["ram"]["percent"] - reference) < 5
    assert samples[-1]["status"] in ("normal", "warning", "critical")


def test_monitor_exits_cleanly_on_ctrl_c() -> None:
    # As from a terminal: a shell without job control starts background jobs with SIGINT ignored, and Python keeps
    # an ignored SIGINT ignored, so a suite launched that way would otherwise see a monitor that cannot be interrupted.
    proc = subprocess.Popen([*CLI, "monitor", "--interval", "0.2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None
    frames = 0
    while frames < 2:  # interrupt a monitor that has shown two frames, however long its start took
        line = proc.stdout.readline()
        assert line, f"the monitor ended before refreshing: {proc.wait(timeout=10)}"
        frames += "Crash Guard memory monitor" in line
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err


def test_monitor_rejects_bad_arguments() -> None:
    assert _run("monitor", "--interval", "0").returncode == 2
    bad = _run("monitor", "--warning", "0.95", "--critical", "0.9", "--once")
    assert bad.returncode == 2 and "warning" in bad.stderr
    assert _run("monitor", "--interval", "soon").returncode == 2


def test_seed_script_command_line(repo_root) -> None:
    env = {**os.environ, "PYTHONPATH": ""}
    result = subprocess.run([sys.executable, str(repo_root / "scripts/monitoring/memory_monitor.py"), "--once"],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert "RAM" in result.stdout


def test_cleanup_prints_a_report(tmp_path) -> None:
    text = _run("cleanup", "--runs-dir", str(tmp_path))
    assert text.returncode == 0, text.stderr
    assert "gc.collect" in text.stdout and "malloc_trim" in text.stdout
    data = json.loads(_run("cleanup", "--runs-dir", str(tmp_path), "--json").stdout)
    assert {"ramBefore", "ramAfter", "freed", "sidecar", "runs"} <= data.keys()
    assert {"rssBefore", "rssAfter", "rssFreed", "steps"} <= data["sidecar"].keys()
