"""Is the process a status file names really that run? A status file is only a claim. It is believed when:

1. the pid is a process, not a thread (a thread id names a /proc entry too: its Tgid must be itself), it is
   running and its create time equals the recorded one (pids are reused);
2. the process belongs to this user (real and effective uid) and is not protected: the sidecar itself, its
   ancestors (the editor and its extension host) and pid 1 are never ours to touch, whatever a file claims;
3. the process holds the run's lock: the inode of `runs/<name>/.lock` (`.lock.rankN`), found by lstat in the
   checked run folder (a regular file of this user with exactly one link: a hard link to a file some other
   process has open is refused), is among the files `/proc/<pid>/fd` has open (runs/lock.py). A file can copy a
   pid and a create time; it cannot make a process open a file.

Signals go through a pidfd opened *before* the final re-check (`send_signal`), so a pid reused between the check
and the signal is never hit. Where no pidfd can be had, nothing is signalled.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import stat
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from .files import RefusedFile, check_private
from .status import RunStatus, lock_name

log = logging.getLogger(__name__)
# psutil derives create time from boot time + start ticks, so the same process reads the same value in the run
# and in the sidecar; the tolerance only absorbs float rounding in the JSON round trip.
CREATE_TIME_TOLERANCE = 0.05
PIDFD = "pidfd"


@dataclass(frozen=True)
class Verdict:
    alive: bool  # the registered process is running and proved it holds the run's lock
    controllable: bool  # alive, and Crash Guard may write requests to it and signal it
    reason: str | None  # why not alive / not controllable
    process: psutil.Process | None = None
    foreign: bool = False  # a live process that is not this run (protected, another user's, no lock): a refusal


@functools.lru_cache(maxsize=1)
def protected_pids() -> frozenset[int]:
    """The sidecar, every ancestor of it (the editor), and init. Computed once: ancestors do not change."""
    pids = {os.getpid(), 1}
    try:
        pids.update(p.pid for p in psutil.Process().parents())
    except psutil.Error:
        pids.add(os.getppid())
    return frozenset(pids)


def _protected_reason(pid: int) -> str:
    if pid == 1:
        return "pid 1 is init: never touched"
    if pid == os.getpid():
        return f"pid {pid} is the sidecar itself"
    return f"pid {pid} is an ancestor of the sidecar (the editor or its extension host): never touched"


def _refused(reason: str, process: psutil.Process | None = None) -> Verdict:
    return Verdict(False, False, reason, process, foreign=True)


def thread_group_of(pid: int) -> int | None:
    """The Tgid of /proc/<pid>/status: the pid itself for a process, its process's pid for a thread id (which
    /proc also answers to, though it lists only processes); None if it cannot be read."""
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"Tgid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def verify(pid: object, create_time: object) -> Verdict:
    """Checks 1 and 2: the pid is the recorded process, this user's, and not protected (`verify_run` adds 3)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return Verdict(False, False, f"invalid pid {pid!r}")
    if isinstance(create_time, bool) or not isinstance(create_time, (int, float)) or create_time != create_time:
        return Verdict(False, False, "no valid create time recorded")
    tgid = thread_group_of(pid)
    if tgid is not None and tgid != pid:
        return _refused(f"pid {pid} is a thread of process {tgid}, not a process: a run records its process id")
    try:
        proc = psutil.Process(pid)  # reads the process's create time now
        actual = proc.create_time()
        if not abs(actual - float(create_time)) <= CREATE_TIME_TOLERANCE:  # `not <=`: a NaN never matches
            return Verdict(False, False, f"pid {pid} now belongs to another process (create time differs)")
        if proc.status() == psutil.STATUS_ZOMBIE:
            return Verdict(False, False, f"process {pid} has exited (zombie)")
        uids = proc.uids()
    except psutil.NoSuchProcess:
        return Verdict(False, False, f"process {pid} has exited")
    except psutil.AccessDenied:
        return _refused(f"process {pid} cannot be inspected")
    if pid in protected_pids():
        return _refused(_protected_reason(pid))
    me = os.getuid()
    if uids.real != me or uids.effective != me:
        return _refused(f"process {pid} belongs to another user (uid {uids.real})")
    return Verdict(True, True, None, proc)


def lock_identity(run_fd: int, rank: int) -> tuple[int, int]:
    """(st_dev, st_ino) of the rank's lock file in the open run folder; RefusedFile if it is missing or unsafe."""
    name = lock_name(rank)
    try:
        st = os.stat(name, dir_fd=run_fd, follow_symlinks=False)
    except FileNotFoundError:
        raise RefusedFile(f"no lock file {name}: not registered by a live RunHook of this Crash Guard version "
                          "(an older hook, or a copied status file)") from None
    if not stat.S_ISREG(st.st_mode):
        raise RefusedFile(f"{name} is not a regular file (a symlink?)")
    if st.st_nlink != 1:  # a hard link to a file another process holds open would pass the descriptor proof
        raise RefusedFile(f"{name} has {st.st_nlink} links (a hard link to another file?): a run's lock has one")
    check_private(st, name)
    return st.st_dev, st.st_ino


def holds_file(pid: int, dev: int, ino: int, hint_fd: int | None = None) -> bool | None:
    """Whether process `pid` has the file (dev, ino) open; None if its descriptors cannot be read.

    `hint_fd` (the descriptor number the run recorded) is looked at first: one stat instead of a pass over every
    descriptor (~1 ms for a trainer with 500 open files). A wrong hint only costs the full pass; it proves nothing
    by itself, since the descriptor must still lead to that very inode."""
    fd_dir = f"/proc/{pid}/fd"
    if hint_fd is not None:
        try:
            st = os.stat(f"{fd_dir}/{hint_fd}")  # follows the magic link to the open file itself
            if st.st_dev == dev and st.st_ino == ino:
                return True
        except OSError:
            pass
    try:
        names = os.listdir(fd_dir)  # in descriptor order: the lock, opened early, comes early
    except OSError:
        return None
    for name in names:
        try:
            st = os.stat(f"{fd_dir}/{name}")
        except OSError:
            continue
        if st.st_dev == dev and st.st_ino == ino:
            return True
    return False


@dataclass(frozen=True)
class LockHolder:
    """A live process of this user that has a run's lock file open (the run, or a stray child that kept it)."""

    pid: int
    command: str  # its command line, cut to MAX_COMMAND characters

    def describe(self) -> str:
        return f"pid {self.pid} ({self.command})"


MAX_COMMAND = 300


def command_of(pid: int) -> str:
    """The command line of `pid` as one string (its name when the command line is empty or unreadable)."""
    try:
        proc = psutil.Process(pid)
        words = proc.cmdline() or [proc.name()]
    except psutil.Error:
        return "?"
    text = " ".join(words)
    return text if len(text) <= MAX_COMMAND else text[:MAX_COMMAND - 1] + "\u2026"


def lock_holders(dev: int, ino: int, limit: int = 4) -> list[LockHolder]:
    """The processes of this user that have the file (dev, ino) open, by a pass over /proc (milliseconds per
    hundred processes: for an error message or a crashed run's Resume, never for every sample)."""
    me = os.getuid()
    found: list[LockHolder] = []
    try:
        entries = [e for e in os.scandir("/proc") if e.name.isdigit()]
    except OSError:
        return found
    for entry in entries:
        pid = int(entry.name)
        try:
            if entry.stat(follow_symlinks=False).st_uid != me or pid == os.getpid():
                continue
        except OSError:
            continue
        if holds_file(pid, dev, ino):
            found.append(LockHolder(pid, command_of(pid)))
            if len(found) >= limit:
                break
    return found


def verify_run(run_fd: int, status: RunStatus) -> Verdict:
    """All three checks for a status read from the run folder open as `run_fd`."""
    verdict = verify(status.pid, status.create_time)
    if not verdict.alive:
        return verdict
    try:
        dev, ino = lock_identity(run_fd, status.rank)
    except RefusedFile as exc:
        return _refused(str(exc), verdict.process)
    if status.lock_ino is not None and (status.lock_dev, status.lock_ino) != (dev, ino):
        return _refused(f"{lock_name(status.rank)} is not the lock this status was written with (replaced)",
                        verdict.process)
    held = holds_file(status.pid, dev, ino, status.lock_fd)
    if held:
        return verdict
    if verdict.process is not None and not _running(verdict.process):
        return Verdict(False, False, f"process {status.pid} has exited")  # it died while we looked
    if held is None:
        return _refused(f"cannot read /proc/{status.pid}/fd to check that it holds {lock_name(status.rank)}",
                        verdict.process)
    return _refused(f"process {status.pid} does not hold {lock_name(status.rank)}: it did not register this run "
                    "(a status file alone is no proof)", verdict.process)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def pidfd_supported() -> bool:
    """Whether signals can go through a pidfd here (Linux 5.3+, Python 3.9+)."""
    return hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal")


def send_signal(pid: int, sig: int, recheck: Callable[[], str | None]) -> tuple[bool, str]:
    """Send `sig` to `pid` only if `recheck()` (None = still the verified run) passes *after* a handle on the
    process was taken. Returns (sent, PIDFD or why not).

    The signal goes through a pidfd: it reaches the process the handle was opened on or nobody (ESRCH once it has
    exited), so a pid reused after the check is never hit. Without a pidfd (a kernel before 5.3, pidfd_open refused
    by a seccomp filter, a thread id) nothing is sent: kill(2) by number is exactly what the proof exists to avoid.
    """
    if pid <= 1 or pid in protected_pids():  # belt and braces: recheck() refuses these too
        return False, f"pid {pid} is protected"
    if not pidfd_supported():
        return False, "no pidfd on this system (Linux 5.3+ and Python 3.9+): Crash Guard signals through one only"
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False, f"process {pid} has exited"
    except OSError as exc:
        log.warning("pidfd_open(%d) failed (%s): not signalled (Crash Guard signals through a pidfd only)", pid, exc)
        return False, f"no pidfd for process {pid} ({exc.strerror or exc}): not signalled"
    try:
        problem = recheck()
        if problem is not None:
            return False, problem
        signal.pidfd_send_signal(pidfd, sig)
        return True, PIDFD
    except ProcessLookupError:
        return False, f"process {pid} exited before the signal"
    finally:
        os.close(pidfd)
