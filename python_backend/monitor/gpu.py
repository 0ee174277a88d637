"""VRAM per GPU through NVML (nvidia-ml-py). No driver, no GPU or a failing query never raises: the device
list is empty with a reason, and a failed figure is None ("n/a")."""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used: int | None  # bytes; None where the driver does not say (e.g. some containers)


@dataclass(frozen=True)
class GpuReading:
    index: int
    name: str
    total: int | None
    used: int | None
    utilization: int | None  # percent of time a kernel ran over the last sample period
    processes: list[GpuProcess] = field(default_factory=list)

    @property
    def percent(self) -> float | None:
        if self.total is None or self.used is None or self.total == 0:
            return None
        return round(100.0 * self.used / self.total, 2)


class NvmlTimeoutError(RuntimeError):
    pass


def _load_pynvml() -> ModuleType | None:
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        return None
    return pynvml


class GPUMonitor:
    """Samples every NVIDIA GPU. Calls go through one worker thread with a timeout, because a wedged driver can
    block an NVML call for seconds; while such a call is stuck, readings are "n/a" instead of piling up threads."""

    # After a failed nvmlInit, wait this long before trying again (a driver may be loaded later).
    INIT_RETRY_SECONDS = 30.0

    def __init__(self, timeout: float = 1.0, nvml: ModuleType | None = None) -> None:
        self._timeout = timeout
        self._nvml = nvml if nvml is not None else _load_pynvml()
        self._lock = threading.Lock()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._stuck: concurrent.futures.Future[Any] | None = None
        self._initialized = False
        self._next_init = 0.0
        self._known_count = 0
        self.reason: str | None = None  # why there are no readings, when there are none
        if self._nvml is None:
            self.reason = "nvidia-ml-py is not installed"

    # -- plumbing ---------------------------------------------------------------------------------
    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._stuck is not None:
            if not self._stuck.done():
                raise NvmlTimeoutError("an earlier NVML call is still blocked")
            self._stuck = None
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="nvml")
        future = self._executor.submit(fn, *args)
        try:
            return future.result(timeout=self._timeout)
        except concurrent.futures.TimeoutError:
            self._stuck = future
            raise NvmlTimeoutError(f"NVML call {getattr(fn, '__name__', fn)} took over {self._timeout}s") from None

    def _ensure_init(self) -> bool:
        if self._initialized:
            return True
        if self._nvml is None or time.monotonic() < self._next_init:
            return False
        try:
            self._call(self._nvml.nvmlInit)
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, timeouts...
            self.reason = f"NVML unavailable: {exc.__class__.__name__}: {exc}".rstrip(": ")
            self._next_init = time.monotonic() + self.INIT_RETRY_SECONDS
            return False
        self._initialized = True
        self.reason = None
        return True

    def _optional(self, fn: Callable[..., T], *args: Any) -> T | None:
        try:
            return self._call(fn, *args)
        except Exception as exc:
            log.debug("NVML %s failed: %s", getattr(fn, "__name__", fn), exc)
            return None

    # -- public -----------------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        with self._lock:
            return self._ensure_init()

    def read(self) -> list[GpuReading]:
        """One reading per device; [] (with `reason` set) when there is no usable GPU."""
        with self._lock:
            if not self._ensure_init():
                return []
            nvml = self._nvml
            assert nvml is not None
            count = self._optional(nvml.nvmlDeviceGetCount)
            if count is None:
                # Keep showing the devices seen before, as "n/a", rather than making them vanish.
                self.reason = "NVML could not count devices"
                return [_unknown(index) for index in range(self._known_count)]
            self._known_count = count
            if count == 0:
                self.reason = "no NVIDIA GPU found"
            return [self._read_device(nvml, index) for index in range(count)]

    def _read_device(self, nvml: ModuleType, index: int) -> GpuReading:
        handle = self._optional(nvml.nvmlDeviceGetHandleByIndex, index)
        if handle is None:
            return _unknown(index)
        name = self._optional(nvml.nvmlDeviceGetName, handle)
        if isinstance(name, bytes):
            name = name.decode(errors="replace")
        mem = self._optional(nvml.nvmlDeviceGetMemoryInfo, handle)
        util = self._optional(nvml.nvmlDeviceGetUtilizationRates, handle)
        procs = self._optional(nvml.nvmlDeviceGetComputeRunningProcesses, handle) or []
        return GpuReading(
            index=index,
            name=name or "n/a",
            total=int(mem.total) if mem is not None else None,
            used=int(mem.used) if mem is not None else None,
            utilization=int(util.gpu) if util is not None else None,
            processes=[GpuProcess(pid=int(p.pid), used=_vram_of(p)) for p in procs],
        )

    def process_vram(self) -> dict[int, int]:
        """Bytes of VRAM per pid, summed over devices (for attributing VRAM to guarded runs)."""
        totals: dict[int, int] = {}
        for gpu in self.read():
            for proc in gpu.processes:
                if proc.used is not None:
                    totals[proc.pid] = totals.get(proc.pid, 0) + proc.used
        return totals

    def close(self) -> None:
        with self._lock:
            if self._initialized and self._nvml is not None:
                self._optional(self._nvml.nvmlShutdown)
            self._initialized = False
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None


def _unknown(index: int) -> GpuReading:
    return GpuReading(index=index, name="n/a", total=None, used=None, utilization=None)


def _vram_of(proc: Any) -> int | None:
    used = getattr(proc, "usedGpuMemory", None)
    # NVML reports "not available" as None or as a sentinel larger than any real device.
    if used is None or used >= (1 << 60):
        return None
    return int(used)
