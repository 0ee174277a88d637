"""System RAM and swap, container-aware: the seed's `MemoryMonitor`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from .cgroup import read_cgroup_memory
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


def read_ram(cgroup_root: Path = Path("/sys/fs/cgroup"), proc_cgroup: str | None = None) -> RamReading:
    """`cgroup_root` and `proc_cgroup` (the text of /proc/self/cgroup) exist for fixture trees in tests."""
    vm = psutil.virtual_memory()
    swap = psutil.swap_memory()
    total, available = vm.total, vm.available
    source, cg_path = "physical", None
    cgroup = read_cgroup_memory(cgroup_root, proc_cgroup)
    if cgroup is not None and cgroup.limit < vm.total:
        total = cgroup.limit
        # Host pressure still counts: a container cannot use memory the host does not have.
        available = max(0, min(cgroup.limit - cgroup.working_set, vm.available))
        source, cg_path = f"cgroup v{cgroup.version}", cgroup.path
    used = total - available
    return RamReading(
        total=total,
        available=available,
        used=used,
        percent=round(100.0 * used / total, 2) if total else 0.0,
        swap_total=swap.total,
        swap_used=swap.used,
        swap_percent=swap.percent,
        physical_total=vm.total,
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
