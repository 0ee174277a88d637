"""One full reading of the machine for the sidecar: RAM, GPUs, the heaviest processes and the guarded runs.

Kept cheap for a 1 s tick: the process list (a pass over /proc) is refreshed only every few seconds, and a
missing NVML is retried once a minute rather than on every tick.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass

import psutil

from ..monitor.cgroup import CgroupWatch
from ..monitor.gpu import GPUMonitor, GpuReading
from ..monitor.host import RamReading, read_ram
from ..monitor.processes import ProcessMemory, display_name, top_processes
from ..runs.registry import Registry, RunInfo, RunRecord
from ..runs.stall import DEFAULT_FLOOR_SECONDS

TOP_REFRESH_SECONDS = 10.0
GPU_RETRY_SECONDS = 60.0


def _named(proc: ProcessMemory) -> ProcessMemory:
    """`proc` with its display name (two small /proc reads; only for the few listed processes)."""
    try:
        ps = psutil.Process(proc.pid)
        with ps.oneshot():
            cmdline = ps.cmdline()
            try:
                exe = ps.exe()
            except (psutil.AccessDenied, OSError):
                exe = None  # another user's process: cmdline is readable, the exe link is not
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return proc
    name = display_name(proc.name, exe, cmdline)
    return proc if name == proc.name else dataclasses.replace(proc, name=name)


@dataclass(frozen=True)
class Reading:
    time: float
    ram: RamReading
    gpus: list[GpuReading]
    gpu_reason: str | None
    top: list[ProcessMemory]
    records: list[RunRecord]
    runs: list[RunInfo]
    cost_ms: float


class Sampler:
    def __init__(self, registry: Registry, gpu: GPUMonitor | None = None,
                 top_refresh: float = TOP_REFRESH_SECONDS) -> None:
        self.registry = registry
        self._gpu = gpu or GPUMonitor()
        self._top_refresh = top_refresh
        self._top: list[ProcessMemory] = []
        self._top_at = -float("inf")
        self._top_count = -1
        self._gpu_retry_at = 0.0
        self._cgroup = CgroupWatch()
        self._lock = threading.Lock()

    def _gpus(self, now: float) -> list[GpuReading]:
        if now < self._gpu_retry_at:
            return []
        gpus = self._gpu.read()
        if not gpus and self._gpu.reason:
            self._gpu_retry_at = now + GPU_RETRY_SECONDS
        return gpus

    def _top_processes(self, count: int, now: float) -> list[ProcessMemory]:
        if count <= 0:
            return []
        if count != self._top_count or now - self._top_at >= self._top_refresh:
            self._top = [_named(t) for t in top_processes(count)]
            self._top_at, self._top_count = now, count
        return self._top

    def read(self, top_count: int, hung_floor: float = DEFAULT_FLOOR_SECONDS) -> Reading:
        with self._lock:
            started = time.perf_counter()
            now = time.monotonic()
            ram = read_ram(cgroup=self._cgroup.read)
            gpus = self._gpus(now)
            vram_by_pid: dict[int, int] = {}
            for gpu in gpus:
                for proc in gpu.processes:
                    if proc.used is not None:
                        vram_by_pid[proc.pid] = vram_by_pid.get(proc.pid, 0) + proc.used
            records = self.registry.scan()
            wall = time.time()
            runs = [r.info(vram_by_pid, hung_floor, wall) for r in records]
            top = self._top_processes(top_count, now)
            return Reading(time=wall, ram=ram, gpus=gpus, gpu_reason=None if gpus else self._gpu.reason,
                           top=top, records=records, runs=runs,
                           cost_ms=round((time.perf_counter() - started) * 1000, 3))

    def close(self) -> None:
        self._gpu.close()
