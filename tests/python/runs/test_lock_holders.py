"""A run lock held by a stray child (issue 21, class 12): the holder is named and ended only on proof.

Real processes: a registered run whose C-level fork keeps the lock (children/stray_lock_child.py), killed -9 as a
crash would kill it. The stray is found, named with its command line, and ended (SIGTERM; SIGKILL only when asked);
after that the run registers again. What is never ended: an unregistered process holding a hard link to the lock
(two links: no proof), a process holding a copy, a thread id of the holder, a pid whose create time changed, the
run's own live process, and anything when no pidfd can be had.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from stray_helpers import StartStray, strays

from crashguard.runs import RunHook
from crashguard.runs import lock_holders as lh
from crashguard.runs.lock import RunLocked
from crashguard.runs.status import RunState


@pytest.fixture
def stray(runs_dir: Path) -> Iterator[StartStray]:
    with strays(runs_dir) as start:
        yield start


def test_a_stray_child_keeps_the_lock_is_named_and_ended_then_the_run_registers(
        runs_dir: Path, stray: StartStray) -> None:
    s = stray("brats")
    s.crash()
    with pytest.raises(RunLocked):
        RunHook("brats", runs_dir=runs_dir).start()  # what Resume meets today
    holders = lh.find_holders(runs_dir, "brats")
    assert [(h.pid, h.rank, h.is_run) for h in holders] == [(s.child, 0, False)]
    assert "stray_lock_child.py" in holders[0].command and holders[0].name.startswith("python")
    result = lh.end_holder(runs_dir, "brats", s.child, holders[0].create_time)
    assert (result.ok, result.signalled, result.released) == (True, True, True), result
    assert "SIGTERM" in result.message
    assert lh.find_holders(runs_dir, "brats") == []
    hook = RunHook("brats", runs_dir=runs_dir)
    hook.start()  # Resume can register now
    hook.finish(RunState.FINISHED)


def test_sigterm_ignored_then_sigkill_only_when_asked(runs_dir: Path, stray: StartStray) -> None:
    s = stray("stubborn", "--ignore-term")
    s.crash()
    term = lh.end_holder(runs_dir, "stubborn", s.child, s.created, wait=0.5)
    assert (term.ok, term.signalled, term.released) == (True, True, False), term
    assert s.alive() and "still holds the lock" in term.message
    kill = lh.end_holder(runs_dir, "stubborn", s.child, s.created, force=True)
    assert (kill.ok, kill.signalled, kill.released) == (True, True, True), kill
    assert "SIGKILL" in kill.message


def test_never_a_thread_id_a_reused_pid_or_the_run_itself(runs_dir: Path, stray: StartStray) -> None:
    s = stray("threads", "--thread")
    s.crash()
    assert s.thread not in (0, s.child)
    # /proc/<tid>/fd lists the same files: a thread id "holds" the lock, and is not a process.
    refused = lh.end_holder(runs_dir, "threads", s.thread, s.created)
    assert (refused.ok, refused.signalled) == (False, False) and "thread id" in refused.message, refused
    stale = lh.end_holder(runs_dir, "threads", s.child, s.created + 5)
    assert (stale.ok, stale.signalled) == (False, False) and "create time" in stale.message, stale
    itself = lh.end_holder(runs_dir, "threads", s.child, s.created, run_pids=frozenset({s.child}))
    assert (itself.ok, itself.signalled) == (False, False) and "Stop Training" in itself.message
    assert [h.is_run for h in lh.find_holders(runs_dir, "threads", run_pids=frozenset({s.child}))] == [True]
    assert s.alive()


def test_a_hard_link_or_a_copy_proves_nothing(runs_dir: Path, tmp_path: Path, stray: StartStray) -> None:
    s = stray("linked")
    s.crash()
    lock = runs_dir / "linked" / ".lock"
    planted = tmp_path / "planted-lock"
    os.link(lock, planted)  # two links: a hard link elsewhere, held open by anyone, proves nothing
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; f = open(sys.argv[1]); time.sleep(300)",
                               str(planted)])
    try:
        time.sleep(0.3)
        assert lh.find_holders(runs_dir, "linked") == []
        for pid in (holder.pid, s.child):
            result = lh.end_holder(runs_dir, "linked", pid, psutil.Process(pid).create_time())
            assert (result.ok, result.signalled) == (False, False), result
        assert holder.poll() is None and s.alive()
    finally:
        holder.kill()
        holder.wait(timeout=10)
    planted.unlink()
    # A copy is another inode: a process holding it holds nothing of the run.
    copy = tmp_path / "copy"
    copy.write_bytes(lock.read_bytes())
    assert [h.pid for h in lh.find_holders(runs_dir, "linked")] == [s.child]


def test_no_pidfd_no_signal(runs_dir: Path, stray: StartStray, monkeypatch: pytest.MonkeyPatch) -> None:
    s = stray("nopidfd")
    s.crash()
    monkeypatch.setattr(lh, "pidfd_supported", lambda: False)
    result = lh.end_holder(runs_dir, "nopidfd", s.child, s.created)
    assert (result.ok, result.signalled) == (False, False) and "pidfd" in result.message
    assert s.alive()


def test_protected_processes_are_never_listed_or_ended(runs_dir: Path) -> None:
    hook = RunHook("mine", runs_dir=runs_dir)  # this very process holds the lock: it is the test, "the editor"
    hook.start()
    try:
        me = psutil.Process()
        # The monitor's own process is protected: never a holder to end, whatever it holds.
        assert all(h.pid != os.getpid() for h in lh.find_holders(runs_dir, "mine"))
        result = lh.end_holder(runs_dir, "mine", os.getpid(), me.create_time())
        assert (result.ok, result.signalled) == (False, False), result
    finally:
        hook.finish(RunState.FINISHED)
