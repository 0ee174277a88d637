"""Memory per process: the cheap RSS of a process tree on every sample, the dear USS/PSS only on demand."""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class ProcessMemory:
    pid: int
    name: str
    rss: int  # bytes, the process alone


@dataclass(frozen=True)
class TreeMemory:
    """RSS of a process and its descendants (a training run and its DataLoader workers)."""

    pid: int
    rss: int  # summed RSS; shared pages count once per process, so this over-counts shared memory
    processes: int


@dataclass(frozen=True)
class DetailedMemory:
    """USS (memory freed if the process exits) and PSS (shared pages split fairly); reads smaps (~15 ms)."""

    pid: int
    rss: int
    uss: int
    pss: int
    swap: int


_PROC = "/proc"
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


# Kernels without CONFIG_PROC_CHILDREN lack these files; psutil's slower scan is used there.
_HAS_PROC_CHILDREN = os.path.exists(f"{_PROC}/self/task/{os.getpid()}/children")


def _proc_children(pid: int) -> list[int]:
    """Direct children from /proc/<pid>/task/*/children: a few small reads, where psutil's
    children(recursive=True) reads the parent of every process on the machine (~2 ms for 80 processes)."""
    try:
        tids = os.listdir(f"{_PROC}/{pid}/task")
    except OSError:
        return []  # exited
    kids: list[int] = []
    for tid in tids:  # a child belongs to the thread that forked it
        try:
            with open(f"{_PROC}/{pid}/task/{tid}/children", "rb") as handle:
                kids.extend(int(k) for k in handle.read().split())
        except OSError:
            continue  # the thread ended meanwhile
    return kids


def _proc_rss(pid: int) -> int | None:
    try:
        with open(f"{_PROC}/{pid}/statm", "rb") as handle:
            return int(handle.read().split()[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None


def _tree_rss_proc(pid: int) -> TreeMemory | None:
    root_rss = _proc_rss(pid)
    if root_rss is None:
        return None
    total, counted, pending = root_rss, 1, [pid]
    while pending:
        for kid in _proc_children(pending.pop()):
            rss = _proc_rss(kid)
            if rss is not None:  # None: a worker that exited between listing and reading
                total += rss
                counted += 1
                pending.append(kid)
    return TreeMemory(pid=pid, rss=total, processes=counted)


def _tree_rss_psutil(pid: int) -> TreeMemory | None:
    try:
        root = psutil.Process(pid)
        members = [root, *root.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    total = counted = 0
    for proc in members:
        try:
            total += proc.memory_info().rss
            counted += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return TreeMemory(pid=pid, rss=total, processes=counted)


def tree_rss(pid: int) -> TreeMemory | None:
    """RSS summed over `pid` and its descendants; None if `pid` is gone."""
    if _HAS_PROC_CHILDREN:
        return _tree_rss_proc(pid)
    return _tree_rss_psutil(pid)


COMM_LENGTH = 15  # the kernel truncates a process's comm (psutil's name()) to 15 characters


def display_name(comm: str, exe: str | None, cmdline: list[str] | None) -> str:
    """A name a person recognises. psutil's name() is the main thread's comm, which programs may rename
    (node/electron call theirs "MainThread"): keep it only when it is the start of the executable's or argv[0]'s
    basename (then the full basename, as comm is truncated); otherwise the executable's basename, then argv[0]'s.
    """
    exe_base = os.path.basename(exe) if exe else ""
    # argv[0]'s first word: some programs rewrite their whole command line into argv[0].
    argv0 = os.path.basename(cmdline[0].split(" ")[0]) if cmdline and cmdline[0] else ""
    for candidate in (exe_base, argv0):
        if comm and candidate.startswith(comm[:COMM_LENGTH]):
            return candidate
    return exe_base or argv0 or comm or "?"


def own_rss() -> int:
    """This process's RSS: one read of /proc/self/statm (~10 µs; psutil's Process().memory_info() reads the same
    file for ~90 µs), psutil where there is no /proc."""
    rss = _proc_rss(os.getpid())
    return rss if rss is not None else psutil.Process(os.getpid()).memory_info().rss


def top_processes(count: int = 5) -> list[ProcessMemory]:
    """The `count` processes with the largest RSS (one pass over /proc; ~2-10 ms, not for every tick)."""
    found: list[ProcessMemory] = []
    for proc in psutil.process_iter(["pid", "name", "memory_info"]):
        info = proc.info
        mem = info.get("memory_info")
        if mem is None:
            continue
        found.append(ProcessMemory(pid=info["pid"], name=info.get("name") or "?", rss=mem.rss))
    found.sort(key=lambda p: p.rss, reverse=True)
    return found[:count]


def detailed_memory(pid: int) -> DetailedMemory | None:
    """USS/PSS/swap of one process, or None if it is gone or not ours to read."""
    try:
        full = psutil.Process(pid).memory_full_info()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return DetailedMemory(pid=pid, rss=full.rss, uss=full.uss, pss=getattr(full, "pss", full.uss),
                          swap=getattr(full, "swap", 0))
