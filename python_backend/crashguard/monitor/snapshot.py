"""One reading of everything the terminal monitor shows: RAM, swap, the limit, memory pressure, each GPU, the
heaviest processes."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .gpu import GPUMonitor, GpuReading
from .host import MemoryMonitor, RamReading
from .pressure import PsiReading, read_psi
from .processes import ProcessMemory, top_processes
from .thresholds import MemoryStatus


@dataclass(frozen=True)
class Snapshot:
    time: float
    ram: RamReading
    ram_status: MemoryStatus
    gpus: list[GpuReading] = field(default_factory=list)
    gpu_reason: str | None = None
    processes: list[ProcessMemory] = field(default_factory=list)
    pressure: PsiReading | None = None  # the kernel's memory stall averages (None without PSI)

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "status": self.ram_status.value,
            "ram": asdict(self.ram),
            "gpus": [{**asdict(g), "percent": g.percent} for g in self.gpus],
            "gpu_reason": self.gpu_reason,
            "processes": [asdict(p) for p in self.processes],
            "pressure": asdict(self.pressure) if self.pressure else None,
        }


def take_snapshot(memory: MemoryMonitor, gpus: GPUMonitor, top: int = 5) -> Snapshot:
    ram = memory.read()
    gpu_readings = gpus.read()
    return Snapshot(
        time=time.time(),
        ram=ram,
        ram_status=memory.status_of(ram),
        gpus=gpu_readings,
        gpu_reason=gpus.reason if not gpu_readings else None,
        processes=top_processes(top) if top > 0 else [],
        pressure=read_psi(),
    )
