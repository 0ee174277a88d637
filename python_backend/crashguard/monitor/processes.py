"""Memory per process: the cheap RSS of a process tree on every sample, the dear USS/PSS only on demand (one
process on request, a whole tree when the escalation ladder must choose which run to stop)."""

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


@dataclass(frozen=True)
class TreeFootprint:
    """What a process tree really holds, each page counted once: PSS splits a shared page between the processes
    that map it, so summed over a run and its forked DataLoader workers it counts the pages they share once
    (summed RSS counts them once per process). USS is what the tree alone holds (freed if it all exits)."""

    pid: int
    pss: int
    uss: int
    rss: int  # summed, for comparison
    processes: int


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


def _smaps_rollup(pid: int) -> tuple[int, int, int] | None:
    """(pss, uss, rss) in bytes from /proc/<pid>/smaps_rollup (one pass of the kernel over the process's mappings,
    cheaper than parsing smaps); None if the process is gone, not ours to read, or the kernel lacks the file."""
    fields: dict[bytes, int] = {}
    try:
        with open(f"{_PROC}/{pid}/smaps_rollup", "rb") as handle:
            for line in handle:
                key, _, rest = line.partition(b":")
                if key in (b"Rss", b"Pss", b"Private_Clean", b"Private_Dirty"):
                    fields[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    if b"Pss" not in fields:
        return None  # an empty file: a kernel thread or a zombie
    return fields[b"Pss"], fields.get(b"Private_Clean", 0) + fields.get(b"Private_Dirty", 0), fields.get(b"Rss", 0)


def _full_info(pid: int) -> tuple[int, int, int] | None:
    """(pss, uss, rss) through psutil (reads smaps): kernels without smaps_rollup."""
    try:
        full = psutil.Process(pid).memory_full_info()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    return getattr(full, "pss", full.uss), full.uss, full.rss


def _descendants(pid: int) -> list[int]:
    if _HAS_PROC_CHILDREN:
        found, pending = [], [pid]
        while pending:
            kids = _proc_children(pending.pop())
            found.extend(kids)
            pending.extend(kids)
        return found
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


_HAS_ROLLUP = os.path.exists(f"{_PROC}/self/smaps_rollup")


def tree_footprint(pid: int) -> TreeFootprint | None:
    """PSS, USS and RSS summed over `pid` and its descendants; None if `pid` is gone or unreadable.

    Dear (a walk of every mapping of every process: ~5-15 ms for a torch process), so not for every sample: the
    sidecar measures it only when it must choose a run to stop."""
    read = _smaps_rollup if _HAS_ROLLUP else _full_info
    root = read(pid)
    if root is None:
        return None
    pss, uss, rss = root
    counted = 1
    for kid in _descendants(pid):
        figures = read(kid)
        if figures is not None:  # None: a worker that exited between listing and reading
            pss, uss, rss, counted = pss + figures[0], uss + figures[1], rss + figures[2], counted + 1
    return TreeFootprint(pid=pid, pss=pss, uss=uss, rss=rss, processes=counted)


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
