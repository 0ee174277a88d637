"""Emergency cleanup of *this* process: what can be given back without losing work.

Memory lives in the process that allocated it; the sidecar reaches a training run by asking it to call this
(see runs/hook.py), never by cleaning itself.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ..monitor.processes import own_rss

log = logging.getLogger(__name__)


@dataclass
class CleanupStep:
    name: str
    done: bool
    detail: str
    freed: int | None = None  # bytes, where the step can tell


@dataclass
class CleanupReport:
    pid: int
    rss_before: int
    rss_after: int
    vram_before: int | None  # bytes reserved by torch's CUDA cache in this process, None without CUDA
    vram_after: int | None
    seconds: float
    steps: list[CleanupStep] = field(default_factory=list)

    @property
    def rss_freed(self) -> int:
        return self.rss_before - self.rss_after

    @property
    def vram_freed(self) -> int | None:
        if self.vram_before is None or self.vram_after is None:
            return None
        return self.vram_before - self.vram_after

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rss_freed": self.rss_freed, "vram_freed": self.vram_freed}


def _loaded_torch() -> Any | None:
    """torch only if this process already imported it: cleanup must never pay torch's 1.5 s import."""
    return sys.modules.get("torch")


def _cuda_in_use(torch: Any | None) -> list[int]:
    """The CUDA devices this process's caching allocator holds memory on ([] without CUDA, or when CUDA fails).
    Only these are touched: synchronising any other device would create a CUDA context on it."""
    if torch is None:
        return []
    try:
        if not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return []
        return [d for d in range(torch.cuda.device_count()) if torch.cuda.memory_reserved(d) > 0]
    except Exception:  # a broken driver must not break cleanup
        return []


def _cuda_reserved(torch: Any | None) -> int | None:
    if torch is None:
        return None
    try:
        if not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return None
        return sum(torch.cuda.memory_reserved(d) for d in range(torch.cuda.device_count()))
    except Exception:
        return None


def _empty_cuda_cache(torch: Any, before: int) -> CleanupStep:
    """Wait for the devices' queued kernels, then give the allocator's cached blocks back to the driver. A sticky
    CUDA error (a device-side assert, an illegal address) makes every CUDA call fail from then on: it is reported
    in the step, never raised, so a cleanup request always gets its answer."""
    try:
        for device in _cuda_in_use(torch):
            torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        log.warning("CUDA cleanup failed: %s: %s", type(exc).__name__, first)
        return CleanupStep("torch.cuda.empty_cache", False, f"CUDA error: {type(exc).__name__}: {first}")
    after = _cuda_reserved(torch)
    return CleanupStep("torch.cuda.empty_cache", True, "released cached CUDA blocks",
                       freed=None if after is None else before - after)


@functools.cache
def _malloc_trim_function() -> Any | None:
    """glibc's malloc_trim, looked up once per process among the symbols already loaded (libc is): no
    `ctypes.util.find_library`, which spawns `ldconfig -p` on every call. None where libc is not glibc."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def _malloc_trim() -> CleanupStep:
    trim = _malloc_trim_function()
    if trim is None:
        return CleanupStep("malloc_trim", False, "not available (not glibc)")
    before = own_rss()
    released = trim(0)
    after = own_rss()
    return CleanupStep("malloc_trim", True, "returned free heap pages to the OS" if released else
                       "nothing to return", freed=before - after)


def emergency_cleanup() -> CleanupReport:
    """gc, then CUDA's cache (only if torch is already loaded), then glibc's malloc_trim; RSS/VRAM before/after.
    Never raises for a failing step (a broken CUDA context included): each step reports what it did."""
    started = time.perf_counter()
    torch = _loaded_torch()
    rss_before = own_rss()
    vram_before = _cuda_reserved(torch)
    steps: list[CleanupStep] = []

    collected = gc.collect()
    rss_gc = own_rss()
    steps.append(CleanupStep("gc.collect", True, f"{collected} unreachable objects collected",
                             freed=rss_before - rss_gc))

    if vram_before is not None:
        steps.append(_empty_cuda_cache(torch, vram_before))
    else:
        steps.append(CleanupStep("torch.cuda.empty_cache", False,
                                 "skipped: torch not loaded" if torch is None else "skipped: CUDA not in use"))

    steps.append(_malloc_trim())
    report = CleanupReport(pid=os.getpid(), rss_before=rss_before, rss_after=own_rss(), vram_before=vram_before,
                           vram_after=_cuda_reserved(torch), seconds=round(time.perf_counter() - started, 4),
                           steps=steps)
    log.info("emergency cleanup freed %.1f MiB RSS in %.0f ms", report.rss_freed / 2**20, report.seconds * 1e3)
    return report
