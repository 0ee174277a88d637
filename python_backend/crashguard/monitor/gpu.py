"""VRAM per GPU through NVML (nvidia-ml-py), and who holds it. No driver, no GPU or a failing query never raises:
the device list is empty with a reason, and a failed figure is None ("n/a").

GPUs are numbered as NVML and nvidia-smi number them. `read_cuda_device(n)` reads the device a CUDA process of
this environment calls `cuda:n` (CUDA_VISIBLE_DEVICES and MIG applied, see cuda_devices.py).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from types import ModuleType

from .cuda_devices import NvmlDevice, PhysicalGpu, VisibleDevices, inventory, visible_devices
from .gpu_processes import GpuProcess, ProcessNamer, merge_process_lists
from .nvml import NvmlSession, NvmlTimeoutError, shared_session

__all__ = ["GPUMonitor", "GpuProcess", "GpuReading", "NvmlTimeoutError"]


@dataclass(frozen=True)
class GpuReading:
    index: int  # NVML's (nvidia-smi's) index of the GPU
    name: str
    total: int | None
    used: int | None
    utilization: int | None  # percent of time a kernel ran over the last sample period
    processes: list[GpuProcess] = field(default_factory=list)  # heaviest first, unknown figures last
    uuid: str | None = None
    mig_index: int | None = None  # set when this reading is of one MIG device of GPU `index`

    @property
    def percent(self) -> float | None:
        if self.total is None or self.used is None or self.total == 0:
            return None
        return round(100.0 * self.used / self.total, 2)


class GPUMonitor:
    """Samples NVIDIA GPUs through this process's NVML session. `nvml` (with its own session and `timeout`) is for
    tests only, where a stand-in replaces the driver; otherwise every monitor shares one session."""

    def __init__(self, timeout: float = 1.0, nvml: ModuleType | None = None) -> None:
        self._own_session = nvml is not None
        self._session = NvmlSession(nvml, timeout) if nvml is not None else shared_session()
        self._lock = threading.Lock()
        self._known_count = 0
        self._namer = ProcessNamer()
        self._reason: str | None = None

    @property
    def session(self) -> NvmlSession:
        return self._session

    @property
    def reason(self) -> str | None:
        """Why there are no readings, when there are none."""
        return self._session.reason or self._reason

    @property
    def available(self) -> bool:
        return self._session.start()

    # -- every GPU ----------------------------------------------------------------------------------------------
    def read(self) -> list[GpuReading]:
        """One reading per GPU, with the processes on it; [] (with `reason` set) when there is no usable GPU."""
        with self._lock:
            if not self._session.start():
                return []
            gpus = inventory(self._session)
            if gpus is None:
                # Keep showing the devices seen before, as "n/a", rather than making them vanish.
                self._reason = "NVML could not list the devices"
                return [_unknown(index) for index in range(self._known_count)]
            self._known_count = len(gpus)
            self._reason = None if gpus else "no NVIDIA GPU found"
            readings = [self._read_gpu(gpu) for gpu in gpus]
            self._namer.forget_except({p.pid for r in readings for p in r.processes})
            return readings

    def _read_gpu(self, gpu: PhysicalGpu) -> GpuReading:
        reading = self._read_device(gpu.device)
        if not gpu.migs:
            return reading
        # MIG on: per-process figures exist only per MIG device, and the GPU's own memory query may need root.
        parts = [self._read_device(mig) for mig in gpu.migs]
        processes = _heaviest_first([p for part in parts for p in part.processes])
        total, used = reading.total, reading.used
        if (total is None or used is None) and all(p.total is not None and p.used is not None for p in parts):
            total = sum(p.total for p in parts)  # type: ignore[misc]
            used = sum(p.used for p in parts)  # type: ignore[misc]
        return GpuReading(reading.index, reading.name, total, used, reading.utilization, processes, reading.uuid)

    def _read_device(self, device: NvmlDevice) -> GpuReading:
        session, nvml = self._session, self._session.nvml
        assert nvml is not None
        memory = session.memory(device.handle)
        util = session.optional(nvml.nvmlDeviceGetUtilizationRates, device.handle)
        compute = session.optional(nvml.nvmlDeviceGetComputeRunningProcesses, device.handle) or []
        graphics = session.optional(nvml.nvmlDeviceGetGraphicsRunningProcesses, device.handle) or []
        processes = _heaviest_first(self._namer.describe(merge_process_lists(compute, graphics)))
        return GpuReading(
            index=device.nvml_index, name=device.name,
            total=memory.total if memory else None, used=memory.used if memory else None,
            utilization=int(util.gpu) if util is not None else None,
            processes=processes, uuid=device.uuid or None, mig_index=device.mig_index,
        )

    def process_vram(self) -> dict[int, int]:
        """Bytes of VRAM per pid, summed over devices (for attributing VRAM to guarded runs)."""
        totals: dict[int, int] = {}
        for gpu in self.read():
            for proc in gpu.processes:
                if proc.used is not None:
                    totals[proc.pid] = totals.get(proc.pid, 0) + proc.used
        return totals

    # -- the devices this process's CUDA sees -------------------------------------------------------------------
    def visible_devices(self, environ: dict[str, str] | None = None) -> VisibleDevices:
        """cuda:0, cuda:1, ... of a CUDA process started with this environment (default: this process's)."""
        env = os.environ if environ is None else environ
        with self._lock:
            gpus = inventory(self._session) if self._session.start() else None
        if gpus is None:
            return VisibleDevices([], self.reason or "NVML could not list the devices")
        return visible_devices(gpus, env.get("CUDA_VISIBLE_DEVICES"), env.get("CUDA_DEVICE_ORDER"))

    def read_cuda_device(self, cuda_index: int, environ: dict[str, str] | None = None) -> GpuReading | None:
        """The reading of the device CUDA calls `cuda:cuda_index` here (a MIG device's own memory under MIG);
        None when there is no such device."""
        visible = self.visible_devices(environ)
        if not 0 <= cuda_index < len(visible.devices):
            return None
        with self._lock:
            return self._read_device(visible.devices[cuda_index])

    def close(self) -> None:
        """Ends a test's own session; the shared session lives until the process exits."""
        if self._own_session:
            self._session.close()


def _heaviest_first(processes: list[GpuProcess]) -> list[GpuProcess]:
    return sorted(processes, key=lambda p: -1 if p.used is None else p.used, reverse=True)


def _unknown(index: int) -> GpuReading:
    return GpuReading(index=index, name="n/a", total=None, used=None, utilization=None)
