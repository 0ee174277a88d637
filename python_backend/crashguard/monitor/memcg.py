"""The memory cgroup a process is in, and what the kernel counts there: use, limits, throttling, OOM kills,
pressure. cgroup v2 (`memory.current`, `memory.max`, `memory.high`, `memory.events`, `memory.pressure`) and v1
(`memory.usage_in_bytes`, `memory.limit_in_bytes`, `memory.soft_limit_in_bytes`, `memory.failcnt`,
`memory.oom_control`).

cgroup.py finds the tightest limit over this process's ancestors (for the RAM gauge); this module reads one
process's own group, for a run in a group of its own (`crashguard train --memory-max`) and for the cause of a
death (its group's OOM-kill counter). The path comes from `/proc/<pid>/cgroup`, written by the kernel, never from
a file a run wrote. Only small file reads (tens of µs each; the sidecar reads a group whole only every few seconds).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from .cgroup import V1_UNLIMITED_FLOOR, proc_cgroup_paths, read_int, read_stat
from .pressure import PsiReading, read_psi

CGROUP_ROOT = Path("/sys/fs/cgroup")
VMSTAT = Path("/proc/vmstat")


@dataclass(frozen=True)
class MemcgDir:
    """A memory cgroup's directory. `pressure` is the cgroup v2 group's memory.pressure that covers the process
    (on a v1 machine with a v2 hierarchy beside it, the v2 group's PSI still counts its stalls), if any."""

    version: int  # 1 or 2
    path: Path
    pressure: Path | None = None


@dataclass(frozen=True)
class MemcgReading:
    version: int
    path: str
    current: int  # bytes charged to the group, page cache included
    working_set: int  # current minus the inactive file cache the kernel can drop at once
    max: int | None  # the hard limit (the OOM killer acts there); None: unlimited
    high: int | None  # v2 memory.high (throttling starts there); v1 memory.soft_limit_in_bytes; None: unset
    high_events: int | None  # v2: times use went over `high` and the group was throttled; None on v1
    max_events: int | None  # v2 memory.events "max"; v1 memory.failcnt: times the hard limit was hit
    oom_kills: int | None  # processes of this group the kernel's OOM killer killed
    pressure: PsiReading | None  # the group's memory stalls (cgroup v2 PSI)


def _limit(value: int | None) -> int | None:
    return None if value is None or value >= V1_UNLIMITED_FLOOR else value


def _keyed(path: Path) -> dict[str, int]:
    """A small flat-keyed file (`memory.events`, `memory.oom_control`) as a dict."""
    found: dict[str, int] = {}
    try:
        with open(path, "rb") as handle:
            lines = handle.read(4096).split(b"\n")
    except OSError:
        return found
    for line in lines:
        key, _, value = line.partition(b" ")
        if value.isdigit():
            found[key.decode("ascii", "replace")] = int(value)
    return found


def _value_of(path: Path, key: bytes) -> int | None:
    """One key of a long flat-keyed file (`/proc/vmstat`: ~180 lines) without parsing the rest."""
    try:
        with open(path, "rb") as handle:
            data = b"\n" + handle.read()
    except OSError:
        return None
    at = data.find(b"\n" + key + b" ")
    if at < 0:
        return None
    end = data.find(b"\n", at + 1)
    value = data[at + len(key) + 2:end if end >= 0 else len(data)].strip()
    return int(value) if value.isdigit() else None


def _within(mount: Path, rel: str) -> Path | None:
    """`mount/rel` if it is a directory inside the mount (the kernel's path; checked anyway)."""
    parts = [p for p in rel.strip("/").split("/") if p]
    if any(p in (".", "..") for p in parts):
        return None
    directory = mount.joinpath(*parts)
    return directory if directory.is_dir() else None


def _v2_mounts(root: Path) -> list[Path]:
    return [m for m in (root, root / "unified") if (m / "cgroup.controllers").exists()]


def memcg_of(pid: int | str = "self", root: Path = CGROUP_ROOT, proc_cgroup: str | None = None) -> MemcgDir | None:
    """The memory cgroup a process is charged to: its v1 memory group, else the nearest v2 group with the memory
    controller. None for a process in the root group (no group of its own), gone, or where no memory controller
    is mounted. `root` and `proc_cgroup` exist for fixture trees in tests."""
    if proc_cgroup is None:
        try:
            proc_cgroup = Path(f"/proc/{pid}/cgroup").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    v2_rel, v1_rel = proc_cgroup_paths(proc_cgroup)
    pressure = None
    if v2_rel is not None and v2_rel.strip("/"):
        for mount in _v2_mounts(root):
            found = _within(mount, v2_rel)
            if found is not None and (found / "memory.pressure").exists():
                pressure = found / "memory.pressure"
                break
    v1_mount = root / "memory"
    if v1_rel is not None and (v1_mount / "memory.usage_in_bytes").exists():
        if not v1_rel.strip("/"):
            return None
        found = _within(v1_mount, v1_rel)
        return MemcgDir(1, found, pressure) if found is not None else None
    if v2_rel is None or not v2_rel.strip("/"):
        return None
    for mount in _v2_mounts(root):
        directory = _within(mount, v2_rel)
        # Memory is charged to the nearest group that has the controller (a leaf without it is charged above).
        while directory is not None and directory != mount:
            if (directory / "memory.current").exists():
                return MemcgDir(2, directory, pressure or directory / "memory.pressure")
            directory = directory.parent
    return None


def read_memcg(group: MemcgDir) -> MemcgReading | None:
    """The group's figures now; None if it is gone (its last process exited and it was removed)."""
    d = group.path
    if group.version == 2:
        current = read_int(d / "memory.current")
        if current is None:
            return None
        events = _keyed(d / "memory.events")
        return MemcgReading(
            version=2, path=str(d), current=current,
            working_set=max(0, current - read_stat(d / "memory.stat", "inactive_file")),
            max=_limit(read_int(d / "memory.max")), high=_limit(read_int(d / "memory.high")),
            high_events=events.get("high"), max_events=events.get("max"), oom_kills=oom_kills_of(group),
            pressure=read_psi(group.pressure) if group.pressure else None,
        )
    current = read_int(d / "memory.usage_in_bytes")
    if current is None:
        return None
    return MemcgReading(
        version=1, path=str(d), current=current,
        working_set=max(0, current - read_stat(d / "memory.stat", "total_inactive_file")),
        max=_limit(read_int(d / "memory.limit_in_bytes")), high=_limit(read_int(d / "memory.soft_limit_in_bytes")),
        high_events=None, max_events=read_int(d / "memory.failcnt"),
        oom_kills=oom_kills_of(group),
        pressure=read_psi(group.pressure) if group.pressure else None,
    )


def read_memcg_quick(group: MemcgDir, last: MemcgReading) -> MemcgReading | None:
    """What moves between two full readings, for a caller that reads every second (the sidecar): use, the
    event counters (OOM kills above all) and pressure; limits and the file cache are the last full reading's, the
    working set moves with use. Two or three small files instead of seven."""
    d = group.path
    current = read_int(d / ("memory.current" if group.version == 2 else "memory.usage_in_bytes"))
    if current is None:
        return None
    pressure = read_psi(group.pressure) if group.pressure else None
    working_set = max(0, last.working_set + current - last.current)
    if group.version == 2:
        events = _keyed(d / "memory.events")
        return dataclasses.replace(last, current=current, working_set=working_set, high_events=events.get("high"),
                                   max_events=events.get("max"), oom_kills=oom_kills_of(group), pressure=pressure)
    return dataclasses.replace(last, current=current, working_set=working_set, oom_kills=oom_kills_of(group),
                               pressure=pressure)


def oom_kills_of(group: MemcgDir) -> int | None:
    """Only the group's own OOM-kill counter (one small file): what the cause of a death is judged by. The kernel
    counts a kill in the victim's group; v2's memory.events also adds its sub-groups' kills, so its
    memory.events.local (Linux 5.2+) is read where it exists."""
    if group.version == 2:
        local = _keyed(group.path / "memory.events.local")
        return local.get("oom_kill") if local else _keyed(group.path / "memory.events").get("oom_kill")
    return _keyed(group.path / "memory.oom_control").get("oom_kill")


def system_oom_kills(vmstat: Path = VMSTAT) -> int | None:
    """Processes the kernel's OOM killer has killed since boot, machine-wide (any cgroup); None where the kernel
    does not count them (before 4.13)."""
    return _value_of(vmstat, b"oom_kill")
