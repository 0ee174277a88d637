"""kill -9 mid-run: the supervisor marks the run crashed; --resume continues exactly from the last checkpoint.
SIGTERM (forwarded by the supervisor) and a checkpoint_and_stop request end the run with a checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from training_helpers import child_env, crashguard, events, records

from crashguard.runs.supervisor import mark_crashed


def start_training(config: Path, cwd: Path, name: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "crashguard", "train", "--config", str(config),
                             "--runs-dir", "runs", "--run-name", name, "--no-progress", *extra],
                            cwd=cwd, env=child_env(), stderr=subprocess.PIPE, text=True)


def wait_for(predicate: Callable[[], bool], process: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, process.stderr.read() if process.stderr else "exited"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def status_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


@pytest.mark.slow
def test_kill_9_then_resume_continues_exactly(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    config = write_config(train={"epochs": 8}, checkpoint={"every_steps": 2, "keep": 2})
    run_dir = tmp_path / "runs" / "victim"
    supervisor = start_training(config, tmp_path, "victim")
    wait_for(lambda: (run_dir / "checkpoints" / "step-00000004.pt").exists(), supervisor)
    child_pid = status_of(run_dir)["pid"]
    assert child_pid != supervisor.pid
    os.kill(child_pid, signal.SIGKILL)  # what the kernel's OOM killer does
    assert supervisor.wait(timeout=30) == 128 + signal.SIGKILL
    crashed = status_of(run_dir)
    assert crashed["state"] == "crashed" and crashed["exit_cause"] == "killed by signal 9 (SIGKILL)"
    assert crashed["name"] == "victim" and crashed["pid"] == child_pid and crashed["step"] >= 4
    last = sorted(p.name for p in (run_dir / "checkpoints").glob("step-*.pt"))[-1]
    resumed_from = int(last[5:13])

    result = crashguard("train", "--config", str(config), "--runs-dir", "runs", "--run-name", "victim",
                        "--resume", "auto", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    resume = events(run_dir, "resume")
    assert len(resume) == 1 and resume[0]["step"] == resumed_from and last in resume[0]["checkpoint"]
    steps = records(run_dir, "step")
    assert [s["step"] for s in steps] == list(range(1, 17))  # each step once: none lost, none doubled
    assert status_of(run_dir)["state"] == "finished"

    reference = crashguard("train", "--config", str(config), "--runs-dir", "runs", "--run-name", "reference",
                           "--no-supervise", cwd=tmp_path)
    assert reference.returncode == 0
    expected = [s["loss"] for s in records(tmp_path / "runs" / "reference", "step")]
    assert [s["loss"] for s in steps] == pytest.approx(expected, rel=1e-5)  # exactly where it stopped


@pytest.mark.slow
def test_sigterm_to_the_supervisor_checkpoints_and_stops(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    config = write_config(train={"epochs": 50}, checkpoint={"every_steps": 100, "keep": 2})
    run_dir = tmp_path / "runs" / "term"
    supervisor = start_training(config, tmp_path, "term")
    wait_for(lambda: (run_dir / "status.json").exists() and status_of(run_dir)["step"] >= 2, supervisor)
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=30) == 0
    status = status_of(run_dir)
    assert status["state"] == "stopped" and status["checkpoint"].endswith(f"step-{status['step']:08d}.pt")
    assert Path(status["checkpoint"]).exists() and status["step"] < 100


@pytest.mark.slow
def test_checkpoint_and_stop_request(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    config = write_config(train={"epochs": 50}, checkpoint={"every_steps": 100, "keep": 2})
    run_dir = tmp_path / "runs" / "ctl"
    trainer = start_training(config, tmp_path, "ctl", "--no-supervise")
    wait_for(lambda: (run_dir / "status.json").exists() and status_of(run_dir)["step"] >= 1, trainer)
    (run_dir / "control" / "req1.json").write_text(json.dumps({"id": "req1", "action": "checkpoint_and_stop"}))
    assert trainer.wait(timeout=30) == 0
    answer = json.loads((run_dir / "control" / "req1.done.json").read_text())
    status = status_of(run_dir)
    assert answer["ok"] and status["state"] == "stopped"
    assert answer["report"]["checkpoint"] == status["checkpoint"] and Path(status["checkpoint"]).exists()


def test_mark_crashed_only_touches_the_childs_unfinished_status(tmp_path: Path) -> None:
    status_file = tmp_path / "status.json"
    base = {"name": "r", "pid": 41, "create_time": 1.0, "state": "running", "step": 7}
    status_file.write_text(json.dumps(base))
    assert not mark_crashed(status_file, pid=42, returncode=-9)  # another process's status
    status_file.write_text(json.dumps({**base, "state": "finished"}))
    assert not mark_crashed(status_file, pid=41, returncode=-9)  # it ended cleanly
    status_file.write_text(json.dumps(base))
    assert mark_crashed(status_file, pid=41, returncode=-11)
    written = json.loads(status_file.read_text())
    assert written["state"] == "crashed" and written["exit_cause"] == "killed by signal 11 (SIGSEGV)"
    assert written["step"] == 7 and written["name"] == "r"
    assert not mark_crashed(tmp_path / "missing.json", pid=41, returncode=-9)


KILL_EPOCHS, KILL_INTERVAL = 6, 3  # 9 training cases, effective batch 4: 2 steps an epoch, 12 steps
KILL_TOTAL = 2 * KILL_EPOCHS
KILL_STEPS = sorted(__import__("random").Random(19).sample(range(2, KILL_TOTAL), 3))


def kill_config(path: Path, data_root: Path) -> Path:
    from training_helpers import tiny_config

    config = tiny_config(data_root, train={"epochs": KILL_EPOCHS, "val_every_epochs": 3},
                         checkpoint={"every_steps": KILL_INTERVAL, "every_minutes": 10, "keep": 2})
    path.write_text(json.dumps(config))
    return path


@pytest.fixture(scope="session")
def train_reference(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> dict[int, dict]:
    """One uninterrupted `crashguard train` of the kill tests' config, per session: its step records by step."""
    where = tmp_path_factory.mktemp("train-reference")
    config = kill_config(where / "config.json", data_root)
    done = crashguard("train", "--config", str(config), "--runs-dir", "runs", "--run-name", "reference",
                      "--no-supervise", cwd=where, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    steps = {r["step"]: r for r in records(where / "runs" / "reference", "step")}
    assert sorted(steps) == list(range(1, KILL_TOTAL + 1)) and all(len(r["cases"]) == 4 for r in steps.values())
    return steps


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", KILL_STEPS)
def test_a_kill_9_at_a_random_step_redoes_at_most_the_interval_with_the_same_cases_and_losses(
        tmp_path: Path, data_root: Path, kill_at: int, train_reference: dict[int, dict]) -> None:
    from locations import CHILDREN

    config = kill_config(tmp_path / "config.json", data_root)
    run_dir = tmp_path / "runs" / "victim"
    killed = subprocess.run([sys.executable, str(CHILDREN / "kill_at_step.py"), "-m", "crashguard", "train",
                             "--config", str(config), "--runs-dir", "runs", "--run-name", "victim", "--no-progress",
                             "--no-supervise"], cwd=tmp_path, env={**child_env(), "CRASHGUARD_TEST_KILL_AT":
                                                                   str(kill_at)}, capture_output=True, text=True,
                            timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    recorded = status_of(run_dir)["resume_command"]
    assert recorded["argv"][-2:] == ["--resume", "auto"]
    resumed = subprocess.run(recorded["argv"], cwd=recorded["cwd"], env=child_env(), capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    resumes = events(run_dir, "resume")
    start = resumes[-1]["step"] if resumes else 0
    assert kill_at - KILL_INTERVAL <= start <= kill_at, (start, kill_at)  # the work redone: at most the interval
    assert (f"resumed from step {start}" if resumes else "no checkpoint to resume from") in resumed.stderr \
        or not resumes
    steps = records(run_dir, "step")
    assert [s["step"] for s in steps] == list(range(1, KILL_TOTAL + 1))  # rewound to the checkpoint, each once
    for record in steps:
        want = train_reference[record["step"]]
        assert record["cases"] == want["cases"], record["step"]  # the same samples, in the same order
        assert record["loss"] == pytest.approx(want["loss"], abs=1e-6), record["step"]
    assert status_of(run_dir)["state"] == "finished"
