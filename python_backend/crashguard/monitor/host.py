"""System RAM and swap, container-aware: the seed's `MemoryMonitor`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from .cgroup import CgroupMemory, read_cgroup_memory
from .thresholds import MemoryStatus, Thresholds


@dataclass(frozen=True)
class RamReading:
    """RAM as the process experiences it. `used` is total minus *available* (free alone ignores reclaimable
    cache); when a cgroup limit is tighter than physical RAM, `total` is that limit."""

    total: int
    available: int
    used: int
    percent: float  # 0-100, of `total`
    swap_total: int
    swap_used: int
    swap_percent: float
    physical_total: int
    limit_source: str  # "physical", "cgroup v1" or "cgroup v2"
    cgroup_path: str | None = None

    @property
    def fraction(self) -> float:
        return self.percent / 100.0


_MEMINFO_KEYS = (b"MemTotal", b"MemAvailable", b"SwapTotal", b"SwapFree")


def _meminfo(path: str | Path) -> tuple[int, int, int, int]:
    """(total, available, swap total, swap used) in bytes: one read of /proc/meminfo, where psutil's
    virtual_memory() and swap_memory() read it twice and /proc/vmstat once (~0.45 ms, paid on every sample).
    psutil when the kernel lacks a field (MemAvailable: before Linux 3.14) or is not Linux."""
    found: dict[bytes, int] = {}
    try:
        with open(path, "rb") as handle:
            for line in handle:
                key, _, rest = line.partition(b":")
                if key in _MEMINFO_KEYS:
                    found[key] = int(rest.split()[0]) * 1024
                    if len(found) == len(_MEMINFO_KEYS):
                        break
    except (OSError, ValueError, IndexError):
        found = {}
    if len(found) == len(_MEMINFO_KEYS):
        return (found[b"MemTotal"], found[b"MemAvailable"], found[b"SwapTotal"],
                found[b"SwapTotal"] - found[b"SwapFree"])
    vm, swap = psutil.virtual_memory(), psutil.swap_memory()
    return vm.total, vm.available, swap.total, swap.used


def read_ram(cgroup_root: Path = Path("/sys/fs/cgroup"), proc_cgroup: str | None = None,
             cgroup: Callable[[], CgroupMemory | None] | None = None,
             meminfo: str | Path = "/proc/meminfo") -> RamReading:
    """`cgroup_root`, `proc_cgroup` (the text of /proc/self/cgroup) and `meminfo` exist for fixture trees in tests;
    a caller that reads every second passes `cgroup` (e.g. a `CgroupWatch().read`) to skip finding the limit each
    time."""
    physical, vm_available, swap_total, swap_used = _meminfo(meminfo)
    total, available = physical, vm_available
    source, cg_path = "physical", None
    limit = cgroup() if cgroup is not None else read_cgroup_memory(cgroup_root, proc_cgroup)
    if limit is not None and limit.limit < physical:
        total = limit.limit
        # Host pressure still counts: a container cannot use memory the host does not have.
        available = max(0, min(limit.limit - limit.working_set, vm_available))
        source, cg_path = f"cgroup v{limit.version}", limit.path
    used = total - available
    return RamReading(
        total=total,
        available=available,
        used=used,
        percent=round(100.0 * used / total, 2) if total else 0.0,
        swap_total=swap_total,
        swap_used=swap_used,
        swap_percent=round(100.0 * swap_used / swap_total, 1) if swap_total else 0.0,
        physical_total=physical,
        limit_source=source,
        cgroup_path=cg_path,
    )


class MemoryMonitor:
    """RAM status against warning/critical thresholds (fractions of the applicable limit)."""

    def __init__(self, warning: float = 0.80, critical: float = 0.90,
                 cgroup_root: Path = Path("/sys/fs/cgroup")) -> None:
        self.thresholds = Thresholds(warning=warning, critical=critical)
        self._cgroup_root = cgroup_root

    def read(self) -> RamReading:
        return read_ram(self._cgroup_root)

    def status_of(self, reading: RamReading) -> MemoryStatus:
        return self.thresholds.classify(reading.fraction)

    def check_memory(self) -> dict[str, Any]:
        """One reading as a plain dict: status, percent, used, available, total, swap_percent and the rest."""
        reading = self.read()
        return {"status": self.status_of(reading).value, **asdict(reading)}
