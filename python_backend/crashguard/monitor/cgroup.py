"""Container memory limits: cgroup v2 (`memory.max`) and v1 (`memory.limit_in_bytes`).

A process in a container is killed at its cgroup limit, not at physical RAM, so percentages must be taken of
the tighter of the two. Only cheap file reads here (a few µs each): this runs on every sample.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

# v1 reports "no limit" as a huge page-aligned number (PAGE_COUNTER_MAX * page size); anything at or above
# this is treated as unlimited.
V1_UNLIMITED_FLOOR = 1 << 62


@dataclass(frozen=True)
class CgroupMemory:
    """The memory limit that applies to this process's cgroup, and its current use."""

    version: int  # 1 or 2
    path: str  # the cgroup directory the limit was read from
    limit: int  # bytes
    usage: int  # bytes charged to the cgroup, page cache included
    inactive_file: int  # reclaimable page cache; usage minus this is the working set

    @property
    def working_set(self) -> int:
        return max(0, self.usage - self.inactive_file)


def read_int(path: Path) -> int | None:
    try:
        with open(path, "rb") as handle:
            text = handle.read(64).strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" (v2's no limit) and anything odd: None


def read_stat(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def proc_cgroup_paths(proc_cgroup: str) -> tuple[str | None, str | None]:
    """The process's (v2 path, v1 memory path) from the text of /proc/<pid>/cgroup."""
    v2: str | None = None
    v1: str | None = None
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            v2 = path
        elif "memory" in controllers.split(","):
            v1 = path
    return v2, v1


def _candidates(mount: Path, cgroup_path: str) -> list[Path]:
    """The cgroup's directory and its ancestors up to the mount root, nearest first.

    Inside a cgroup namespace the path in /proc/self/cgroup may not exist under the mount; the mount root
    itself is then the process's own cgroup.
    """
    rel = cgroup_path.strip("/")
    own = mount / rel if rel else mount
    if not own.is_dir():
        return [mount]
    dirs = [own]
    while own != mount and own.parent != own:
        own = own.parent
        dirs.append(own)
    return dirs


def read_cgroup_memory(root: Path = Path("/sys/fs/cgroup"), proc_cgroup: str | None = None) -> CgroupMemory | None:
    """The tightest cgroup memory limit over this process's cgroup and its ancestors, or None if unlimited.

    `root` and `proc_cgroup` exist so tests can point this at fixture trees.
    """
    if proc_cgroup is None:
        try:
            proc_cgroup = Path("/proc/self/cgroup").read_text()
        except OSError:
            return None
    v2_path, v1_path = proc_cgroup_paths(proc_cgroup)

    if v1_path is not None:
        mount = root / "memory"
        if mount.is_dir():
            found = _tightest(mount, v1_path, version=1)
            if found is not None:
                return found
    if v2_path is not None:
        for mount in (root, root / "unified"):
            if (mount / "cgroup.controllers").exists():
                found = _tightest(mount, v2_path, version=2)
                if found is not None:
                    return found
    return None


def _tightest(mount: Path, cgroup_path: str, version: int) -> CgroupMemory | None:
    limit_file, usage_file, inactive_key = (
        ("memory.max", "memory.current", "inactive_file")
        if version == 2
        else ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
    )
    best: CgroupMemory | None = None
    own_dir: Path | None = None
    for directory in _candidates(mount, cgroup_path):
        if own_dir is None and (directory / usage_file).exists():
            own_dir = directory
        limit = read_int(directory / limit_file)
        if limit is None or limit >= V1_UNLIMITED_FLOOR:
            continue
        if best is None or limit < best.limit:
            # Usage is read from the directory whose limit applies: that is the counter the kernel compares.
            best = CgroupMemory(
                version=version,
                path=str(directory),
                limit=limit,
                usage=read_int(directory / usage_file) or 0,
                inactive_file=read_stat(directory / "memory.stat", inactive_key),
            )
    return best


_FILES = {2: ("memory.max", "memory.current", "inactive_file"),
          1: ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")}


class CgroupWatch:
    """`read_cgroup_memory()` for a caller that asks every second (the sidecar): finding where the tightest limit
    lives (a walk over the cgroup and its ancestors, ~0.7 ms) is done again only every `refresh` seconds; in
    between a read costs the three small files of that one directory."""

    def __init__(self, refresh: float = 30.0, root: Path = Path("/sys/fs/cgroup"),
                 proc_cgroup: str | None = None) -> None:
        self._refresh = refresh
        self._root = root
        self._proc_cgroup = proc_cgroup
        self._found: CgroupMemory | None = None
        self._expires = -float("inf")

    def read(self) -> CgroupMemory | None:
        now = time.monotonic()
        found = self._found
        if now < self._expires:
            if found is None:
                return None
            limit_file, usage_file, inactive_key = _FILES[found.version]
            directory = Path(found.path)
            limit = read_int(directory / limit_file)
            if limit is not None and limit == found.limit:  # unchanged: only use moves
                return CgroupMemory(found.version, found.path, limit, read_int(directory / usage_file) or 0,
                                    read_stat(directory / "memory.stat", inactive_key))
        self._found = read_cgroup_memory(self._root, self._proc_cgroup)
        self._expires = now + self._refresh
        return self._found
