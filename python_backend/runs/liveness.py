"""Is the process a status file names really that run? Pid *and* create time must match (pids are reused), and
some processes are never ours to touch whatever a file claims: the sidecar itself, its ancestors (the editor and
its extension host), pid 1, and other users' processes."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import psutil

# psutil derives create time from boot time + start ticks, so the same process reads the same value in the run
# and in the sidecar; the tolerance only absorbs float rounding in the JSON round trip.
CREATE_TIME_TOLERANCE = 0.05


@dataclass(frozen=True)
class Verdict:
    alive: bool  # the registered process is running: pid exists, create time matches, not a zombie
    controllable: bool  # alive, and Crash Guard may write requests to it and signal it
    reason: str | None  # why not alive / not controllable
    process: psutil.Process | None = None


@functools.lru_cache(maxsize=1)
def protected_pids() -> frozenset[int]:
    """The sidecar, every ancestor of it (the editor), and init. Computed once: ancestors do not change."""
    pids = {os.getpid(), 1}
    try:
        pids.update(p.pid for p in psutil.Process().parents())
    except psutil.Error:
        pids.add(os.getppid())
    return frozenset(pids)


def verify(pid: object, create_time: object, for_control: bool = False) -> Verdict:
    """Check a registration. `for_control` adds the checks needed before writing a request or signalling."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return Verdict(False, False, f"invalid pid {pid!r}")
    if not isinstance(create_time, (int, float)):
        return Verdict(False, False, "no create time recorded")
    try:
        proc = psutil.Process(pid)  # reads the process's create time now
        actual = proc.create_time()
        if abs(actual - float(create_time)) > CREATE_TIME_TOLERANCE:
            return Verdict(False, False, f"pid {pid} now belongs to another process (create time differs)")
        if proc.status() == psutil.STATUS_ZOMBIE:
            return Verdict(False, False, f"process {pid} has exited (zombie)")
    except psutil.NoSuchProcess:
        return Verdict(False, False, f"process {pid} has exited")
    except psutil.AccessDenied:
        return Verdict(False, False, f"process {pid} cannot be inspected")
    if pid in protected_pids():
        return Verdict(False, False, f"pid {pid} is the sidecar or one of its ancestors (the editor)")
    if for_control:
        try:
            if proc.uids().real != os.getuid():
                return Verdict(True, False, f"process {pid} belongs to another user", proc)
        except psutil.Error as exc:
            return Verdict(False, False, f"process {pid}: {exc}")
    return Verdict(True, True, None, proc)
