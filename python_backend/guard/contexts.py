"""Context managers that check memory on entry and exit and clean up on the way out."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

from ..monitor.gpu import GPUMonitor
from ..monitor.host import read_ram
from .cleanup import emergency_cleanup
from .failures import MemoryPressureError

log = logging.getLogger(__name__)
OnPressure = Literal["raise", "warn"]


def _handle(resource: str, fraction: float, threshold: float, on_pressure: OnPressure) -> None:
    error = MemoryPressureError(resource, fraction, threshold)
    if on_pressure == "raise":
        raise error
    warnings.warn(str(error), ResourceWarning, stacklevel=4)
    log.warning("%s", error)


def _guarded(resource: str, read_fraction: Callable[[], float | None], threshold: float,
             on_pressure: OnPressure, cleanup: bool) -> Iterator[float | None]:
    fraction = read_fraction()
    if fraction is not None and fraction >= threshold:
        emergency_cleanup()  # maybe the pressure is our own garbage
        fraction = read_fraction()
        if fraction is not None and fraction >= threshold:
            _handle(resource, fraction, threshold, on_pressure)
    failed = True
    try:
        yield fraction
        failed = False
    finally:
        if cleanup:
            emergency_cleanup()
        after = read_fraction()
        # Never replace an exception already on its way out with a pressure error.
        if not failed and after is not None and after >= threshold:
            _handle(resource, after, threshold, on_pressure)


@contextmanager
def memory_safe_context(threshold: float = 0.80, on_pressure: OnPressure = "raise",
                        cleanup: bool = True) -> Iterator[float | None]:
    """RAM guard: raises MemoryPressureError (or warns) when use is over `threshold` (fraction of the limit that
    applies, cgroup included) on entry, after a cleanup, or on exit. Yields the entry fraction."""
    yield from _guarded("RAM", lambda: read_ram().fraction, threshold, on_pressure, cleanup)


def _gpu_fraction_reader(device: int | None, monitor: GPUMonitor | None) -> Callable[[], float | None]:
    index = device or 0

    def from_torch() -> float | None:
        torch = sys.modules.get("torch")
        if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return None
        free, total = torch.cuda.mem_get_info(index)
        return (total - free) / total if total else None

    nvml = monitor or GPUMonitor()

    def read() -> float | None:
        fraction = from_torch()
        if fraction is not None:
            return fraction
        for gpu in nvml.read():
            if gpu.index == index and gpu.percent is not None:
                return gpu.percent / 100.0
        return None  # no GPU here: the guard has nothing to check

    return read


@contextmanager
def gpu_safe_context(device: int | None = None, threshold: float = 0.90, on_pressure: OnPressure = "raise",
                     cleanup: bool = True, monitor: GPUMonitor | None = None) -> Iterator[float | None]:
    """VRAM guard for one device (default 0). Without a GPU it checks nothing and yields None."""
    reader = _gpu_fraction_reader(device, monitor)
    yield from _guarded(f"GPU {device or 0}", reader, threshold, on_pressure, cleanup)
