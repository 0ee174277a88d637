"""The run lock: what makes a registration more than a file.

A live run holds `runs/<name>/.lock` (other ranks `.lock.rankN`) open and `flock`ed. The sidecar proves a
registration by finding that very inode among `/proc/<pid>/fd` of the pid the status file names
(runs/liveness.py): a status file anyone could write, an open file descriptor in the claimed process only that
process can hold. The kernel drops the lock when the process dies, however it dies.

- Taken before the status file is first written (RunHook.start), so no status of this version exists without it.
- One lock per file per process: a second hook for the same run in the same process (a notebook cell run again)
  shares it; another live process holding it means the run is already running, and start() refuses.
- O_CLOEXEC keeps it out of exec'd children, and a fork handler closes it in forked children (DataLoader
  workers), so only the registered process holds it and a worker outliving a killed trainer cannot keep it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from .files import RefusedFile, check_private
from .liveness import LockHolder, lock_holders


class RunLocked(RuntimeError):
    """Another live process already holds this run's lock. `holders` names it (pid and command line): the run
    itself, or a stray child that kept the lock (a C-level fork runs no at-fork handler); the message says so too,
    as `held by pid <pid> (<command>)`, so whoever reads it (Resume in the editor, a terminal) can tell who."""

    def __init__(self, message: str, holders: tuple[LockHolder, ...] = ()) -> None:
        super().__init__(message)
        self.holders = holders


@dataclass(frozen=True)
class HeldLock:
    path: Path
    fd: int
    dev: int
    ino: int


_held: dict[Path, HeldLock] = {}
_guard = threading.Lock()


def acquire(path: Path, dir_fd: int | None = None) -> HeldLock:
    """Open (creating it 0600) and flock `path` for this process; the same lock again if this process holds it.
    With `dir_fd` (the run folder, held open by the hook) the file is opened relative to it: a run folder swapped
    for a symlink meanwhile changes nothing. The file must be a regular file of this user with one link."""
    with _guard:
        held = _held.get(path)
        if held is not None and _same_file(path, held, dir_fd):
            return held
        if held is not None:  # the file was replaced or removed under us: take the one there now
            _close(held)
        name = path.name if dir_fd is not None else path
        try:
            fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # planted, e.g. in a cloned repository: never lock (or create) through it
                raise RefusedFile(f"{path} is a symlink: refusing to register a run through it") from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise RunLocked(f"{path} is not a regular file")
            if st.st_nlink != 1:  # a hard link to a file elsewhere: the monitor would refuse it as proof anyway
                raise RefusedFile(f"{path} has {st.st_nlink} links: a run's lock file has exactly one (remove it)")
            check_private(st, str(path))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise _locked(path, st) from None
                raise
        except BaseException:
            os.close(fd)
            raise
        held = HeldLock(path, fd, st.st_dev, st.st_ino)
        _held[path] = held
        return held


def _locked(path: Path, st: os.stat_result) -> RunLocked:
    holders = tuple(lock_holders(st.st_dev, st.st_ino))
    if not holders:
        return RunLocked(f"{path} is held by another live process: this run (rank) is already running; stop it "
                         "first or use another run name")
    who = ", ".join(h.describe() for h in holders)
    return RunLocked(f"{path} is held by {who}: this run (rank) is already running, or a process it started kept "
                     "its lock; stop it (or end that process) first, or use another run name", holders)


def release(path: Path) -> None:
    """Close the lock (the kernel drops the flock with the last descriptor)."""
    with _guard:
        held = _held.pop(path, None)
        if held is not None:
            _close(held)


def _same_file(path: Path, held: HeldLock, dir_fd: int | None = None) -> bool:
    try:
        st = os.stat(path.name if dir_fd is not None else path, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (held.dev, held.ino)


def _close(held: HeldLock) -> None:
    with contextlib.suppress(OSError):
        os.close(held.fd)


def _drop_in_child() -> None:
    # A forked child (DataLoader worker) is not the run: close its copies. The parent's descriptors keep the flock.
    for held in _held.values():
        _close(held)
    _held.clear()
    global _guard
    _guard = threading.Lock()  # a lock held by another parent thread at fork time would never be released here


os.register_at_fork(after_in_child=_drop_in_child)
