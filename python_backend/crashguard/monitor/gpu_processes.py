"""Who holds my VRAM: every process NVML lists on a GPU (compute and graphics), with its user and command.

NVML keeps two lists per device: processes with a compute context (CUDA: PyTorch, TensorFlow, ...) and with a
graphics context (OpenGL/Vulkan: the desktop, a browser, VS Code itself). A process with both appears in both, with
the same figure (its memory on that device), so the lists are merged by pid and the figure is counted once.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psutil

from .processes import display_name

COMMAND_LIMIT = 300  # characters of a command line kept for display
# NVML's "not available" (e.g. no permission, a MIG GPU seen from its parent) is None or a huge sentinel.
_NOT_AVAILABLE = 1 << 60


@dataclass(frozen=True)
class GpuProcess:
    pid: int  # as NVML reports it: the host's pid namespace
    used: int | None  # bytes of this device's memory; None where the driver does not say
    name: str = "?"
    user: str | None = None  # None: the process is not visible from here (another pid namespace) or is gone
    command: str | None = None
    kind: str = "compute"  # "compute", "graphics" or "compute+graphics"


@dataclass(frozen=True)
class _Identity:
    create_time: float
    name: str
    user: str | None
    command: str | None


def _vram_of(entry: Any) -> int | None:
    used = getattr(entry, "usedGpuMemory", None)
    if used is None or not isinstance(used, int) or used < 0 or used >= _NOT_AVAILABLE:
        return None
    return used


def merge_process_lists(compute: Iterable[Any], graphics: Iterable[Any]) -> list[tuple[int, int | None, str]]:
    """(pid, bytes, kind) per process, in first-seen order; a pid on both lists counts once, with the larger figure."""
    merged: dict[int, tuple[int | None, str]] = {}
    for kind, entries in (("compute", compute), ("graphics", graphics)):
        for entry in entries:
            pid = int(entry.pid)
            used = _vram_of(entry)
            if pid not in merged:
                merged[pid] = (used, kind)
                continue
            old_used, old_kind = merged[pid]
            both = old_kind if old_kind == kind else "compute+graphics"
            figures = [u for u in (old_used, used) if u is not None]
            merged[pid] = (max(figures) if figures else None, both)
    return [(pid, used, kind) for pid, (used, kind) in merged.items()]


class ProcessNamer:
    """Resolves pids to (name, user, command), remembering each process (pid + start time, so a reused pid is
    read afresh) until it is no longer on any GPU: a sample reads one small /proc file per known process."""

    def __init__(self) -> None:
        self._known: dict[int, _Identity] = {}

    def _identity(self, pid: int) -> _Identity | None:
        try:
            proc = psutil.Process(pid)
            created = proc.create_time()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None
        known = self._known.get(pid)
        if known is not None and known.create_time == created:
            return known
        try:
            with proc.oneshot():
                comm = proc.name()
                cmdline = proc.cmdline()
                user = proc.username()  # the uid as text where it has no passwd entry (some containers)
                try:
                    exe = proc.exe()
                except (psutil.AccessDenied, OSError):
                    exe = None  # another user's process: cmdline is readable, the exe link is not
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None
        command = shlex.join(cmdline) if cmdline else f"[{comm}]"
        if len(command) > COMMAND_LIMIT:
            command = command[:COMMAND_LIMIT - 1] + "…"
        identity = _Identity(created, display_name(comm, exe, cmdline), user, command)
        self._known[pid] = identity
        return identity

    def describe(self, entries: list[tuple[int, int | None, str]]) -> list[GpuProcess]:
        found: list[GpuProcess] = []
        for pid, used, kind in entries:
            identity = self._identity(pid)
            if identity is None:
                found.append(GpuProcess(pid, used, kind=kind))
            else:
                found.append(GpuProcess(pid, used, identity.name, identity.user, identity.command, kind))
        return found

    def forget_except(self, pids: set[int]) -> None:
        for pid in set(self._known) - pids:
            del self._known[pid]
