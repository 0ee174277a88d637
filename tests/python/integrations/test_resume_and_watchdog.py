"""Resume commands (recorded, validated when read back) and the crash watchdog of runs no supervisor started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from crashguard.runs.registry import Registry
from crashguard.runs.resume import resume_command, with_resume_args
from crashguard.runs.status import valid_resume_command
from crashguard.runs.watchdog import start_watchdog, zombie_returncode


def test_resume_arguments_replace_or_append() -> None:
    assert with_resume_args(["py", "t.py", "--lr", "1"], ["--resume"]) == ["py", "t.py", "--lr", "1", "--resume"]
    assert with_resume_args(["py", "t.py", "--resume"], ["--resume"]) == ["py", "t.py", "--resume"]
    assert with_resume_args(["py", "-m", "x", "--resume", "never", "--n", "2"], ["--resume", "auto"]) == \
        ["py", "-m", "x", "--resume", "auto", "--n", "2"]
    assert with_resume_args(["py", "x", "--resume=never"], ["--resume", "auto"]) == ["py", "x", "--resume", "auto"]
    command = resume_command(["--resume"], argv=[sys.executable, "train.py"], cwd="/tmp")
    assert command == {"argv": [sys.executable, "train.py", "--resume"], "cwd": "/tmp"}
    assert resume_command(argv=["python", "train.py"]) is None  # argv[0] must be an absolute interpreter


@pytest.mark.parametrize("claim", [
    "python train.py",  # a shell string: never
    {"argv": "python train.py", "cwd": "/tmp"},
    {"argv": [], "cwd": "/tmp"},
    {"argv": ["python", "train.py"], "cwd": "/tmp"},  # relative interpreter
    {"argv": ["/usr/bin/python3", 1], "cwd": "/tmp"},
    {"argv": ["/usr/bin/python3", "x\0y"], "cwd": "/tmp"},
    {"argv": ["/usr/bin/python3"], "cwd": "relative"},
    {"argv": ["/usr/bin/python3"], "cwd": "/tmp", "env": {"LD_PRELOAD": "/evil.so"}},  # nothing but argv, cwd
    {"argv": ["/usr/bin/python3", "a" * 40000], "cwd": "/tmp"},
    {"argv": ["/usr/bin/python3"] + ["-v"] * 300, "cwd": "/tmp"},
])
def test_a_forged_resume_command_is_dropped_not_passed_on(tmp_path: Path, claim: object) -> None:
    assert valid_resume_command(claim) is None
    run_dir = tmp_path / "runs" / "forged"
    run_dir.mkdir(parents=True)
    status = {"name": "forged", "pid": os.getpid(), "create_time": psutil.Process().create_time(),
              "state": "finished", "resume_command": claim}
    (run_dir / "status.json").write_text(json.dumps(status))
    infos = Registry(tmp_path / "runs").infos()
    # A resume command of the wrong type makes the whole status file refused (never listed, never acted on); a
    # well-typed but invalid one is dropped from a listed run.
    assert infos == [] or [(i.resume_command, i.state) for i in infos] == [(None, "finished")]


def write_status(path: Path, pid: int, state: str = "running") -> None:
    path.write_text(json.dumps({"name": "w", "pid": pid, "create_time": psutil.Process(pid).create_time(),
                                "state": state, "step": 3}))


def wait_state(path: Path, state: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = json.loads(path.read_text())
        if found["state"] == state:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{path} did not become {state}: {path.read_text()}")


def test_the_watchdog_records_a_kill_9_with_its_signal(tmp_path: Path) -> None:
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    status = tmp_path / "status.json"
    write_status(status, victim.pid)
    watchdog = start_watchdog(status, victim.pid, psutil.Process(victim.pid).create_time())
    assert watchdog is not None
    try:
        time.sleep(1.0)  # the watchdog is waiting on the pidfd
        os.kill(victim.pid, signal.SIGKILL)
        crashed = wait_state(status, "crashed")  # read from the zombie: this test has not reaped it yet
        assert crashed["exit_cause"] == "killed by signal 9 (SIGKILL)" and crashed["step"] == 3
        assert zombie_returncode(victim.pid) == -signal.SIGKILL
        assert watchdog.wait(timeout=10) == 0
    finally:
        victim.kill()
        victim.wait()
        if watchdog.poll() is None:
            watchdog.kill()
    assert zombie_returncode(victim.pid) is None  # reaped: no status left to read


def test_the_watchdog_leaves_a_run_that_finished_alone(tmp_path: Path) -> None:
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    status = tmp_path / "status.json"
    write_status(status, victim.pid)
    watchdog = start_watchdog(status, victim.pid, psutil.Process(victim.pid).create_time())
    assert watchdog is not None
    try:
        write_status(status, victim.pid, state="finished")
        assert watchdog.wait(timeout=10) == 0  # it saw the terminal state and left
        victim.kill()
        victim.wait()
        assert json.loads(status.read_text())["state"] == "finished"
    finally:
        victim.kill()
        victim.wait()


def test_the_urgent_watcher_claims_only_plain_small_urgent_requests(tmp_path: Path) -> None:
    from crashguard.runs.urgent import UrgentWatcher

    control = tmp_path / "control"
    control.mkdir()
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps({"id": "a", "action": "checkpoint_and_stop", "urgent": True}))
    (control / "1-link.json").symlink_to(elsewhere)  # a symlink is never followed
    (control / "2-huge.json").write_text(json.dumps({"id": "b", "action": "checkpoint_and_stop", "urgent": True,
                                                      "pad": "x" * 10000}))
    (control / "3-plain.json").write_text(json.dumps({"id": "c", "action": "checkpoint_and_stop"}))  # not urgent
    (control / "4-truthy.json").write_text(json.dumps({"id": "d", "action": "checkpoint_and_stop", "urgent": 1}))
    (control / "5-other.json").write_text(json.dumps({"id": "../../x", "action": "checkpoint_and_stop",
                                                       "urgent": True}))  # an id that is not its file's name
    for path in control.iterdir():
        if not path.is_symlink():
            path.chmod(0o600)
    watcher = UrgentWatcher(os.open(control, os.O_RDONLY | os.O_DIRECTORY), lambda request_id: None)
    assert watcher._claim() is None
    assert (control / "3-plain.json").exists()  # left for the step boundary
    (control / "6-urgent.json").write_text(json.dumps({"id": "6-urgent", "action": "checkpoint_and_stop",
                                                        "sent": 1.0, "urgent": True}))
    (control / "6-urgent.json").chmod(0o600)
    assert watcher._claim() == "6-urgent" and not (control / "6-urgent.json").exists()
    assert elsewhere.exists() and (control / "5-other.json").exists()
    os.close(watcher.control_fd)
