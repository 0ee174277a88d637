"""Context managers that check memory on entry and exit and clean up on the way out."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

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


def _torch_cuda() -> Any | None:
    """torch's CUDA module, only when this process already imported torch and initialised CUDA: the guard must
    neither import torch nor create a CUDA context (hundreds of MB of VRAM) just to look."""
    torch = sys.modules.get("torch")
    try:
        if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return None
    except Exception:  # a broken driver or a sticky CUDA error: NVML still answers
        return None
    return torch.cuda


def _current_device() -> int:
    cuda = _torch_cuda()
    try:
        return int(cuda.current_device()) if cuda is not None else 0
    except Exception:
        return 0


def _gpu_fraction_reader(device: int | None, monitor: GPUMonitor | None) -> tuple[str, Callable[[], float | None]]:
    """(the device's label, a reader of its used fraction). `device` is a CUDA index, as torch numbers devices:
    with CUDA_VISIBLE_DEVICES=2,3, cuda:0 is NVML's GPU 2, so NVML is asked through the CUDA-to-NVML mapping."""
    index = device if device is not None else _current_device()
    nvml = monitor or GPUMonitor()  # cheap: every monitor shares the process's one NVML session

    def read() -> float | None:
        cuda = _torch_cuda()
        if cuda is not None:
            try:
                free, total = cuda.mem_get_info(index)  # the CUDA runtime's own view of this very device
                return (total - free) / total if total else None
            except Exception as exc:
                log.debug("torch.cuda.mem_get_info(%d) failed (%s): asking NVML", index, exc)
        reading = nvml.read_cuda_device(index)
        if reading is None or reading.percent is None:
            return None  # no such GPU here: the guard has nothing to check
        return reading.percent / 100.0

    return f"GPU cuda:{index}", read


@contextmanager
def gpu_safe_context(device: int | None = None, threshold: float = 0.90, on_pressure: OnPressure = "raise",
                     cleanup: bool = True, monitor: GPUMonitor | None = None) -> Iterator[float | None]:
    """VRAM guard for one CUDA device (default: torch's current device, else cuda:0), as torch numbers it.
    Without a GPU it checks nothing and yields None."""
    label, reader = _gpu_fraction_reader(device, monitor)
    yield from _guarded(label, reader, threshold, on_pressure, cleanup)
