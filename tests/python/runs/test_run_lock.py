"""The run lock and signals through a pidfd, with real processes: only the registered process holds the lock (not
its DataLoader workers), the kernel frees it when the process is killed, a second live process for the same run
is refused, and SIGTERM goes through a pidfd taken before the final re-check."""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from trainer_helpers import StartTrainer, wait_registered

from crashguard.runs import control, liveness
from crashguard.runs.control import stop_run
from crashguard.runs.liveness import holds_file, send_signal
from crashguard.runs.registry import Registry


def _lock_of(run_dir: Path, rank: int = 0) -> tuple[int, int]:
    st = (run_dir / (".lock" if rank == 0 else f".lock.rank{rank}")).stat()
    return st.st_dev, st.st_ino


def _register(runs_dir: Path, name: str) -> subprocess.CompletedProcess[str]:
    """A new process that registers `name` and exits at once."""
    code = ("import sys; from crashguard.runs import RunHook, RunState; "
            "h = RunHook(sys.argv[1], runs_dir=sys.argv[2]); h.start(); h.finish(RunState.FINISHED)")
    return subprocess.run([sys.executable, "-c", code, name, str(runs_dir)], capture_output=True, text=True,
                          timeout=60)


def test_only_the_registered_process_holds_the_lock_and_the_kernel_frees_it_on_kill_9(
        runs_dir: Path, start_trainer: StartTrainer) -> None:
    child = start_trainer("solo", mb=10)
    run_dir = runs_dir / "solo"
    dev, ino = _lock_of(run_dir)
    status = json.loads((run_dir / "status.json").read_text())
    assert (status["lock_dev"], status["lock_ino"]) == (dev, ino)
    assert holds_file(child.pid, dev, ino, status["lock_fd"]) and not holds_file(os.getpid(), dev, ino)
    assert holds_file(child.pid, dev, ino, hint_fd=0)  # a wrong hint: the pass over every descriptor finds it
    assert not holds_file(os.getpid(), dev, ino, hint_fd=status["lock_fd"])  # a hint alone proves nothing
    [record] = Registry(runs_dir).scan()
    assert record.verdict.alive and record.verdict.controllable, record.verdict

    second = _register(runs_dir, "solo")  # the same run from another process while it lives
    assert second.returncode != 0 and "RunLocked" in second.stderr and "already running" in second.stderr
    assert child.poll() is None and json.loads((run_dir / "status.json").read_text())["pid"] == child.pid

    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    again = _register(runs_dir, "solo")  # no stale lock: the kernel dropped it with the process
    assert again.returncode == 0, again.stderr
    assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"


WORKERS = textwrap.dedent("""
    import os, sys, time
    import torch
    from torch.utils.data import DataLoader, Dataset
    from crashguard.runs import RunHook

    class Pids(Dataset):
        def __len__(self): return 1000
        def __getitem__(self, i):
            time.sleep(0.01)
            return torch.tensor(os.getpid())

    hook = RunHook(sys.argv[1], runs_dir=sys.argv[2])
    hook.start()
    loader = DataLoader(Pids(), batch_size=1, num_workers=2, multiprocessing_context="fork", persistent_workers=True)
    pids = set()
    for batch in loader:
        pids.add(int(batch))
        if len(pids) == 2:
            break
    print(" ".join(map(str, sorted(pids))), flush=True)
    time.sleep(120)
""")


def test_dataloader_workers_do_not_hold_the_lock_and_cannot_keep_a_killed_run_locked(runs_dir: Path) -> None:
    if importlib.util.find_spec("torch") is None:  # not imported here: the test process stays light
        pytest.skip("torch is not installed")
    child = subprocess.Popen([sys.executable, "-c", WORKERS, "loader", str(runs_dir)], stdout=subprocess.PIPE,
                             text=True)
    workers: list[int] = []
    try:
        assert child.stdout is not None
        workers = [int(pid) for pid in child.stdout.readline().split()]
        assert len(workers) == 2 and all(psutil.Process(w).ppid() == child.pid for w in workers), workers
        dev, ino = _lock_of(runs_dir / "loader")
        assert holds_file(child.pid, dev, ino)
        assert [holds_file(w, dev, ino) for w in workers] == [False, False]  # forked, but closed in the child

        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        assert any(psutil.pid_exists(w) for w in workers), "the workers outlive the trainer for a moment"
        again = _register(runs_dir, "loader")  # ... and still cannot keep the killed run's lock
        assert again.returncode == 0, again.stderr
    finally:
        for pid in [child.pid, *workers]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        child.wait(timeout=10)


def test_a_status_from_an_older_hook_without_a_lock_is_listed_but_never_controlled(runs_dir: Path) -> None:
    """What the hook wrote before run locks existed: a real live process, its true pid and create time."""
    old_hook = textwrap.dedent("""
        import json, os, sys, time, psutil
        run = os.path.join(sys.argv[1], "legacy"); os.makedirs(run)
        status = {"version": 1, "name": "legacy", "pid": os.getpid(),
                  "create_time": psutil.Process().create_time(), "state": "running", "step": 1}
        with open(os.path.join(run, "status.json"), "w") as f: json.dump(status, f)
        print("ready", flush=True)
        time.sleep(120)
    """)
    child = subprocess.Popen([sys.executable, "-c", old_hook, str(runs_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        [record] = Registry(runs_dir).scan()
        assert not record.verdict.alive and record.verdict.foreign
        assert "no lock file .lock" in record.exit_cause and "older hook" in record.exit_cause
        result = stop_run(runs_dir, "legacy", timeout=0.5)
        assert not result.ok and not result.signalled and "not running" in result.message
        assert child.poll() is None and not (runs_dir / "legacy" / "control").exists()
    finally:
        child.kill()
        child.wait(timeout=10)


def _forbid_kill(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_kill(pid: int, sig: int) -> None:
        raise AssertionError(f"kill({pid}, {sig}) called: the pidfd path was not taken")

    monkeypatch.setattr(os, "kill", no_kill)
    monkeypatch.setattr(psutil.Process, "send_signal", lambda self, sig: no_kill(self.pid, sig))


@pytest.mark.skipif(not liveness.pidfd_supported(), reason="no pidfd in this Python/kernel")
def test_sigterm_to_a_run_that_does_not_answer_goes_through_a_pidfd(
        runs_dir: Path, start_trainer: StartTrainer, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    child = start_trainer("deaf", mb=10, no_poll=True)
    _forbid_kill(monkeypatch)
    with caplog.at_level(logging.WARNING, logger=control.__name__):
        result = stop_run(runs_dir, "deaf", timeout=1.0)
    assert result.signalled and result.ok and result.state == "stopped", result
    assert child.wait(timeout=10) == 0  # the hook turned SIGTERM into a checkpoint-and-stop
    assert "sent SIGTERM through a pidfd" in caplog.text


def test_without_a_pidfd_nothing_is_signalled_not_even_the_verified_run(
        runs_dir: Path, start_trainer: StartTrainer, monkeypatch: pytest.MonkeyPatch) -> None:
    """No fallback to kill(2) by number: where pidfd_open is refused (an old kernel, a seccomp filter, a thread
    id), the stop is reported as not signalled and the run goes on (issue 21: a thread id got its parent
    SIGTERMed through the fallback)."""
    child = start_trainer("old-kernel", mb=10, no_poll=True)
    _forbid_kill(monkeypatch)

    def no_pidfd(pid: int, flags: int = 0) -> int:
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd, raising=False)
    result = stop_run(runs_dir, "old-kernel", timeout=1.0)
    assert not result.signalled and not result.ok, result
    assert "no pidfd" in result.message and "not signalled" in result.message, result.message
    assert child.poll() is None


@pytest.mark.skipif(not liveness.pidfd_supported(), reason="no pidfd in this Python/kernel")
def test_a_process_gone_between_the_check_and_the_signal_is_not_signalled(monkeypatch: pytest.MonkeyPatch) -> None:
    victim = subprocess.Popen(["sleep", "60"])
    _forbid_kill(monkeypatch)

    def recheck_then_exit() -> None:
        # The check passes, then the process ends and is reaped: its pid is free for reuse. The pidfd still
        # names the old process, so the signal can only fail, never reach a newcomer with that pid.
        subprocess.run(["kill", "-9", str(victim.pid)], check=True)
        victim.wait(timeout=10)
        return None

    sent, why = send_signal(victim.pid, signal.SIGTERM, recheck_then_exit)
    assert (sent, why) == (False, f"process {victim.pid} exited before the signal")


def test_protected_pids_are_refused_before_anything_else(monkeypatch: pytest.MonkeyPatch) -> None:
    _forbid_kill(monkeypatch)
    calls: list[int] = []
    for pid in (1, os.getpid(), os.getppid()):
        sent, why = send_signal(pid, signal.SIGTERM, lambda p=pid: calls.append(p))
        assert not sent and "protected" in why
    assert calls == []


def test_a_registered_run_is_alive_within_a_second_of_starting(runs_dir: Path) -> None:
    """The lock is taken before the first status is written: a fresh run is never seen unproven."""
    code = ("import sys, time; from crashguard.runs import RunHook; "
            "h = RunHook('fresh', runs_dir=sys.argv[1]); h.start(); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code, str(runs_dir)])
    registry = Registry(runs_dir)
    try:
        seen: list[bool] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(seen):
            seen += [r.verdict.alive for r in registry.scan()]
            time.sleep(0.001)
        wait_registered(runs_dir, "fresh", child.pid)
        assert seen and all(seen), "a status file was visible before its lock was held"
        assert registry.take_refusals() == []
    finally:
        child.kill()
        child.wait(timeout=10)
