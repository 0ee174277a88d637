"""End the process that keeps a run's lock after the run itself is gone (a stray child of a C-level fork), so the
run can be resumed: the user saw it named (RunInfo.lock_holder, RunLocked) and asked for it.

It is signalled only on the same kind of proof as a run, by the same checks (runs/liveness.py): the run is not
alive; its lock file (in the checked run folder, a regular file of this user with one link: `lock_identity`) is open
in that very process (`holds_file`); the process is a process (not a thread), running, this user's, not protected
(`verify`). The signal goes through a pidfd opened before the final re-check (`send_signal`), never by number:
SIGTERM, or SIGKILL (`force`) when the user chose "End Forcibly" after SIGTERM left it running (a child that
inherited the trainer's SIGTERM handler and sits in C code never runs that handler, so SIGTERM does not end it).
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import psutil

from .files import RefusedFile, open_run_dir
from .liveness import holds_file, lock_identity, send_signal, verify
from .registry import RunRecord
from .status import lock_name

log = logging.getLogger(__name__)
POLL_SECONDS = 0.05


@dataclass(frozen=True)
class EndHolderResult:
    run: str
    pid: int
    ok: bool  # the process held the lock, was signalled and has exited
    signalled: bool
    message: str


def _problem(run_dir: Path, rank: int, pid: int) -> str | None:
    """None if `pid` is a process of this user, not protected, holding the lock of the run in `run_dir` now."""
    try:
        created = psutil.Process(pid).create_time()
    except psutil.Error:
        return f"process {pid} has exited"
    # A run's checks 1 and 2 (a process, not a thread id; running; this user's; not protected). Its create time is
    # read now: what proves this process is the holder is check 3, the lock open in it, re-checked after the pidfd.
    verdict = verify(pid, created)
    if not verdict.alive:
        return verdict.reason or f"process {pid} cannot be checked"
    try:
        with open_run_dir(run_dir.parent, run_dir.name) as run_fd:
            dev, ino = lock_identity(run_fd, rank)
    except (OSError, RefusedFile) as exc:
        return str(exc)
    if not holds_file(pid, dev, ino):
        return f"process {pid} does not hold {lock_name(rank)} of run {run_dir.name}"
    return None


class RunFinder(Protocol):
    def find(self, name: str) -> list[RunRecord]: ...


def end_lock_holder(registry: RunFinder, run_dir: Path, pid: int, rank: int = 0, force: bool = False,
                    timeout: float = 5.0) -> EndHolderResult:
    """SIGTERM (`force`: SIGKILL) `pid` if it keeps the lock of the ended run in `run_dir` (rank `rank`); wait up to
    `timeout` s for it to exit."""
    name = run_dir.name
    records = [r for r in registry.find(name) if r.run_dir == run_dir and r.rank == rank]
    if not records:
        return EndHolderResult(name, pid, False, False, f"no run {name} (rank {rank}) in a watched runs folder")
    if records[0].verdict.alive:
        return EndHolderResult(name, pid, False, False, f"run {name} is running: stop the run, not a process of it")
    problem = _problem(run_dir, rank, pid)
    if problem is not None:
        return EndHolderResult(name, pid, False, False, f"not signalled: {problem}")
    sig = signal.SIGKILL if force else signal.SIGTERM
    sent, how = send_signal(pid, sig, lambda: _problem(run_dir, rank, pid))
    if not sent:
        return EndHolderResult(name, pid, False, False, f"not signalled: {how}")
    log.warning("sent %s through a pidfd to pid %d, which kept the lock of run %s (rank %d)", sig.name, pid, name,
                rank)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.Error:
            break
        time.sleep(POLL_SECONDS)
    else:
        return EndHolderResult(name, pid, False, True, f"sent {sig.name} to pid {pid}; it has not exited within "
                               f"{timeout:g} s")
    return EndHolderResult(name, pid, True, True, f"pid {pid} ended ({sig.name}); run {name} can be resumed")
