"""Who holds a run's lock when the run itself is gone, and ending that process on request (issue 21, class 12).

A child made by a C-level fork keeps the run's lock (the fork handler that closes it in forked children only runs
for Python-level forks), so Resume fails with RunLocked until that process ends. The extension asks the monitor who
holds the lock (`crashGuard/lockHolders`) and, after the user saw the process and chose to, asks it to end it
(`crashGuard/endLockHolder`). A holder is proved the way a registration is (runs/liveness.py):

- the lock file is a regular file with one link, owned by this user and not writable by others, found in the run's
  folder opened without following a symlink (a hard link planted elsewhere has two links: refused);
- that very inode is among `/proc/<pid>/fd` of the process;
- the process is this user's (real and effective uid), a thread-group leader (never a thread id), and not protected
  (the monitor, its ancestors — the editor — and pid 1).

Ending re-checks all of it after a pidfd was taken, with the create time the holder was listed with (a pid reused
since is never hit), and signals through that pidfd only: where no pidfd can be had, nothing is signalled. SIGTERM,
or SIGKILL when the user chose "End Forcibly" after SIGTERM left it holding the lock. The run's own live process is
never ended here (Stop Training stops a run).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from .files import RefusedFile, check_private, open_run_dir
from .liveness import PIDFD, pidfd_supported, protected_pids, send_signal, verify

log = logging.getLogger(__name__)
LOCK_NAME = re.compile(r"^\.lock(?:\.rank([1-9][0-9]{0,5}))?$")  # runs/status.py lock_name(rank)
MAX_HOLDERS = 16
MAX_COMMAND_CHARS = 500
MAX_NAME_CHARS = 255
RELEASE_WAIT_SECONDS = 3.0
POLL_SECONDS = 0.05


@dataclass(frozen=True)
class LockHolder:
    pid: int
    rank: int  # the rank whose lock it holds
    name: str
    command: str  # its command line, bounded (shown to the user before anything is signalled)
    create_time: float
    is_run: bool  # the run's own registered, live process: never ended here


@dataclass(frozen=True)
class LockHoldersResult:
    holders: list[LockHolder]


@dataclass(frozen=True)
class EndLockHolderResult:
    ok: bool  # no refusal (the process may still hold the lock: see `released`)
    signalled: bool
    released: bool  # no process holds that lock any more
    message: str


def _locks(run_fd: int) -> dict[tuple[int, int], int]:
    """(st_dev, st_ino) -> rank of the run folder's lock files that pass the checks (regular, one link, ours)."""
    locks: dict[tuple[int, int], int] = {}
    for name in os.listdir(run_fd):
        match = LOCK_NAME.match(name)
        if match is None:
            continue
        try:
            st = os.stat(name, dir_fd=run_fd, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                log.info("lock file %s refused: %s", name, "not a regular file" if not stat.S_ISREG(st.st_mode)
                         else f"{st.st_nlink} links (a hard link elsewhere proves nothing)")
                continue
            check_private(st, name)
        except (OSError, RefusedFile) as exc:
            log.info("lock file %s refused: %s", name, exc)
            continue
        locks[(st.st_dev, st.st_ino)] = int(match.group(1) or 0)
    return locks


def _thread_group_leader(pid: int) -> bool:
    """Whether `pid` is a process (Tgid == pid), not one of its threads (/proc/<tid> answers too)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Tgid:"):
                    return int(line.split()[1]) == pid
    except (OSError, ValueError):
        return False
    return False


def _open_inodes(pid: int) -> Iterator[tuple[int, int]]:
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return
    for name in names:
        try:
            st = os.stat(f"{fd_dir}/{name}")  # follows the magic link to the open file itself
        except OSError:
            continue
        yield st.st_dev, st.st_ino


def _held(pid: int, locks: dict[tuple[int, int], int]) -> int | None:
    """The rank whose lock `pid` holds open, or None."""
    for inode in _open_inodes(pid):
        if inode in locks:
            return locks[inode]
    return None


def _ours(proc: psutil.Process) -> bool:
    me = os.getuid()
    try:
        uids = proc.uids()
    except psutil.Error:
        return False
    return uids.real == me and uids.effective == me and proc.pid not in protected_pids()


def _describe(proc: psutil.Process) -> tuple[str, str, float] | None:
    try:
        with proc.oneshot():
            name = proc.name()[:MAX_NAME_CHARS]
            command = " ".join(proc.cmdline())[:MAX_COMMAND_CHARS]
            created = proc.create_time()
    except psutil.Error:
        return None
    return name, command, created


def find_holders(runs_dir: Path, name: str, run_pids: frozenset[int] = frozenset()) -> list[LockHolder]:
    """The live processes of this user that hold a lock file of run `name` open (at most MAX_HOLDERS).
    `run_pids`: the run's own live, verified processes (marked `is_run`)."""
    with open_run_dir(runs_dir, name) as run_fd:
        locks = _locks(run_fd)
    if not locks:
        return []
    holders: list[LockHolder] = []
    for proc in psutil.process_iter():
        if not _ours(proc):
            continue
        rank = _held(proc.pid, locks)
        if rank is None or not _thread_group_leader(proc.pid):
            continue
        described = _describe(proc)
        if described is None:
            continue
        holders.append(LockHolder(proc.pid, rank, *described, is_run=proc.pid in run_pids))
        if len(holders) >= MAX_HOLDERS:
            break
    return holders


def _problem(runs_dir: Path, name: str, pid: int, create_time: float) -> str | None:
    """None while `pid` is still the listed holder: the same process, ours, a leader, holding a checked lock."""
    verdict = verify(pid, create_time)
    if not verdict.alive:
        return verdict.reason or f"process {pid} is not the one listed"
    if not _thread_group_leader(pid):
        return f"{pid} is a thread id, not a process"
    try:
        with open_run_dir(runs_dir, name) as run_fd:
            locks = _locks(run_fd)
    except (OSError, RefusedFile) as exc:
        return str(exc)
    if _held(pid, locks) is None:
        return f"process {pid} does not hold a lock of run {name}"
    return None


def _released(runs_dir: Path, name: str, pid: int, wait: float) -> bool:
    deadline = time.monotonic() + wait
    while True:
        try:
            with open_run_dir(runs_dir, name) as run_fd:
                locks = _locks(run_fd)
        except (OSError, RefusedFile):
            return True  # the run folder is gone: no lock to hold
        if _held(pid, locks) is None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)


def end_holder(runs_dir: Path, name: str, pid: int, create_time: float, force: bool = False,
               run_pids: frozenset[int] = frozenset(), wait: float = RELEASE_WAIT_SECONDS) -> EndLockHolderResult:
    """Signal the process `pid` (listed by find_holders with `create_time`) after proving again that it holds a
    lock of run `name`; then wait up to `wait` seconds for the lock to be released."""
    if pid in run_pids:
        return EndLockHolderResult(False, False, False,
                                   f"process {pid} is the run {name} itself: stop it with Stop Training")
    if not pidfd_supported():
        return EndLockHolderResult(False, False, False,
                                   "this system gives no pidfd: Crash Guard signals no process by a bare pid")
    problem = _problem(runs_dir, name, pid, create_time)
    if problem is not None:
        return EndLockHolderResult(False, False, False, problem)
    sig = signal.SIGKILL if force else signal.SIGTERM
    sent, how = send_signal(pid, sig, lambda: _problem(runs_dir, name, pid, create_time))
    if not sent:
        return EndLockHolderResult(False, False, False, how)
    if how != PIDFD:  # liveness.send_signal fell back to kill(2): should not happen after pidfd_supported()
        log.warning("process %d was signalled without a pidfd", pid)
    log.warning("sent %s to process %d, which held the lock of run %s", sig.name, pid, name)
    released = _released(runs_dir, name, pid, wait)
    message = f"sent {sig.name} to process {pid}" + ("" if released else f"; it still holds the lock of run {name}")
    return EndLockHolderResult(True, True, released, message)
