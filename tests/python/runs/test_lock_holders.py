"""A run lock held by a stray child (issue 21, class 12): the holder is named and ended only on proof.

Real processes: a registered run whose C-level fork keeps the lock (children/stray_lock_child.py), killed -9 as a
crash would kill it. The stray is named (RunLocked.holders, RunRecord.lock_holder) and ended by
runs/lock_holders.py `end_lock_holder` (SIGTERM; SIGKILL only when asked, `force`); after that the run registers
again. What is never ended: a process holding a hard link to the lock (two links: no proof) or a copy of it, a thread
id of the holder, any process of a run that is alive, a protected process (even one holding the lock), and anything
when no pidfd can be had.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from stray_helpers import StartStray, strays

from crashguard.runs import RunHook, liveness
from crashguard.runs.lock import RunLocked
from crashguard.runs.lock_holders import end_lock_holder
from crashguard.runs.registry import Registry
from crashguard.runs.status import RunState

HOLD_OPEN = "import sys, time; f = open(sys.argv[1]); print('ready', flush=True); time.sleep(300)"


@pytest.fixture
def stray(runs_dir: Path) -> Iterator[StartStray]:
    with strays(runs_dir) as start:
        yield start


@pytest.fixture
def holding(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """Processes that hold a file open (started by `_hold`), killed at the end."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait(timeout=10)


def _hold(holding: list[subprocess.Popen[str]], path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD_OPEN, str(path)], stdout=subprocess.PIPE, text=True)
    holding.append(proc)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_a_stray_child_keeps_the_lock_is_named_and_ended_then_the_run_registers(
        runs_dir: Path, stray: StartStray) -> None:
    s = stray("brats")
    s.crash()
    with pytest.raises(RunLocked) as locked:
        RunHook("brats", runs_dir=runs_dir).start()  # what Resume meets
    assert [h.pid for h in locked.value.holders] == [s.child]
    registry = Registry(runs_dir)
    [record] = registry.scan()
    holder = record.lock_holder()
    assert holder is not None and holder.pid == s.child and "stray_lock_child.py" in holder.command
    result = end_lock_holder(registry, runs_dir / "brats", s.child)
    assert (result.ok, result.signalled) == (True, True) and "SIGTERM" in result.message, result
    assert not s.alive()
    assert Registry(runs_dir).scan()[0].lock_holder() is None
    hook = RunHook("brats", runs_dir=runs_dir)
    hook.start()  # Resume can register now
    hook.finish(RunState.FINISHED)


def test_sigterm_ignored_then_sigkill_only_when_asked(runs_dir: Path, stray: StartStray) -> None:
    s = stray("stubborn", "--ignore-term")
    s.crash()
    registry = Registry(runs_dir)
    term = end_lock_holder(registry, runs_dir / "stubborn", s.child, timeout=0.5)
    assert (term.ok, term.signalled) == (False, True) and "SIGTERM" in term.message, term
    assert s.alive() and "not exited" in term.message
    kill = end_lock_holder(registry, runs_dir / "stubborn", s.child, force=True)
    assert (kill.ok, kill.signalled) == (True, True) and "SIGKILL" in kill.message, kill
    assert not s.alive()


def test_never_a_thread_id_nor_a_process_of_a_live_run(runs_dir: Path, stray: StartStray) -> None:
    s = stray("threads", "--thread")
    s.crash()
    assert s.thread not in (0, s.child)
    # /proc/<tid>/fd lists the same files: a thread id "holds" the lock, and is not a process.
    refused = end_lock_holder(Registry(runs_dir), runs_dir / "threads", s.thread)
    assert (refused.ok, refused.signalled) == (False, False) and "thread" in refused.message, refused
    assert s.alive()
    live = stray("live")  # not crashed: the run itself and its child both hold the lock
    registry = Registry(runs_dir)
    for pid in (live.parent.pid, live.child):
        result = end_lock_holder(registry, runs_dir / "live", pid)
        assert (result.ok, result.signalled) == (False, False) and "is running" in result.message, result
    assert live.parent.poll() is None and live.alive()


def test_a_hard_link_or_a_copy_proves_nothing(runs_dir: Path, tmp_path: Path, stray: StartStray,
                                              holding: list[subprocess.Popen[str]]) -> None:
    s = stray("linked")
    s.crash()
    lock = runs_dir / "linked" / ".lock"
    planted = tmp_path / "planted-lock"
    os.link(lock, planted)  # two links: a hard link elsewhere, held open by anyone, proves nothing
    holder = _hold(holding, planted)
    registry = Registry(runs_dir)
    for pid in (holder.pid, s.child):
        result = end_lock_holder(registry, runs_dir / "linked", pid)
        assert (result.ok, result.signalled) == (False, False) and "2 links" in result.message, result
    assert holder.poll() is None and s.alive()
    planted.unlink()
    # A copy is another inode: a process holding it holds nothing of the run.
    copy = tmp_path / "copy"
    copy.write_bytes(lock.read_bytes())
    other = _hold(holding, copy)
    result = end_lock_holder(registry, runs_dir / "linked", other.pid)
    assert (result.ok, result.signalled) == (False, False) and "does not hold .lock" in result.message, result
    assert other.poll() is None


def test_no_pidfd_no_signal(runs_dir: Path, stray: StartStray, monkeypatch: pytest.MonkeyPatch) -> None:
    s = stray("nopidfd")
    s.crash()
    monkeypatch.setattr(liveness, "pidfd_supported", lambda: False)
    result = end_lock_holder(Registry(runs_dir), runs_dir / "nopidfd", s.child, force=True)
    assert (result.ok, result.signalled) == (False, False) and "pidfd" in result.message, result
    assert s.alive()


def test_a_protected_process_holding_the_lock_is_never_ended(runs_dir: Path, stray: StartStray) -> None:
    s = stray("mine")
    s.crash()
    # This very process (here "the monitor") holds the crashed run's lock too; it and its parent ("the editor") are
    # protected whatever they hold.
    fd = os.open(runs_dir / "mine" / ".lock", os.O_RDONLY)
    try:
        registry = Registry(runs_dir)
        for pid in (os.getpid(), os.getppid()):
            result = end_lock_holder(registry, runs_dir / "mine", pid, force=True)
            assert (result.ok, result.signalled) == (False, False), result
        assert "sidecar itself" in end_lock_holder(registry, runs_dir / "mine", os.getpid()).message
    finally:
        os.close(fd)
    assert s.alive()
