"""One NVML session per process (nvidia-ml-py), shared by every GPUMonitor and every gpu_safe_context.

nvmlInit is not free (it opens every device) and a process needs it once: the session initialises lazily, retries
a failed init only after a pause (a driver may be loaded later), and shuts NVML down at exit. Every call runs on one
daemon thread with a timeout, because a wedged driver can block an NVML call for seconds: while such a call is
stuck, later calls fail at once instead of piling up threads, and the stuck thread never delays the exit.
A forked child starts a session of its own (NVML state does not survive a fork).
"""

from __future__ import annotations

import atexit
import concurrent.futures
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

# NVML return codes (nvml.h) that mean "this driver has no v2 memory query", not "this device failed".
_NO_V2_CODES = ("NVML_ERROR_FUNCTION_NOT_FOUND", "NVML_ERROR_ARGUMENT_VERSION_MISMATCH")


class NvmlTimeoutError(RuntimeError):
    pass


@dataclass(frozen=True)
class MemoryInfo:
    total: int
    used: int
    reserved: int | None  # set aside by the driver and firmware; only the v2 query tells it


def load_pynvml() -> ModuleType | None:
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        return None
    return pynvml


class _Worker:
    """One daemon thread running NVML calls in order."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[..., Any], tuple[Any, ...]]] = \
            queue.SimpleQueue()
        threading.Thread(target=self._run, name="nvml", daemon=True).start()

    def _run(self) -> None:
        while True:
            future, fn, args = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to the caller, who decides
                future.set_exception(exc)

    def submit(self, fn: Callable[..., T], args: tuple[Any, ...]) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put((future, fn, args))
        return future


class NvmlSession:
    """NVML for one process. `nvml` is the pynvml module (a stand-in only in tests: the driver cannot exist here)."""

    INIT_RETRY_SECONDS = 30.0

    def __init__(self, nvml: ModuleType | None, timeout: float = 1.0) -> None:
        self.nvml = nvml
        self.timeout = timeout
        self._lock = threading.RLock()
        self._worker: _Worker | None = None
        self._stuck: concurrent.futures.Future[Any] | None = None
        self._initialized = False
        self._next_init = 0.0
        self._memory_v2: bool | None = None  # None until the driver has been asked
        self.cache: dict[Any, Any] = {}  # what does not change while the session lives (device inventory)
        self.reason: str | None = None if nvml is not None else "nvidia-ml-py is not installed"

    # -- calls ------------------------------------------------------------------------------------------------
    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) on the NVML thread; NvmlTimeoutError if it takes over `timeout` or an earlier call is stuck."""
        with self._lock:
            if self._stuck is not None:
                if not self._stuck.done():
                    raise NvmlTimeoutError("an earlier NVML call is still blocked")
                self._stuck = None
            if self._worker is None:
                self._worker = _Worker()
            future = self._worker.submit(fn, args)
        try:
            return future.result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            with self._lock:
                self._stuck = future
            raise NvmlTimeoutError(f"NVML call {getattr(fn, '__name__', fn)} took over {self.timeout}s") from None

    def optional(self, fn: Callable[..., T], *args: Any) -> T | None:
        """fn(*args), or None when it fails (not supported, no permission, GPU lost, timeout)."""
        try:
            return self.call(fn, *args)
        except Exception as exc:
            log.debug("NVML %s failed: %s", getattr(fn, "__name__", fn), exc)
            return None

    def error_is(self, exc: BaseException, *names: str) -> bool:
        nvml = self.nvml
        codes = {getattr(nvml, name) for name in names if hasattr(nvml, name)}
        return getattr(exc, "value", None) in codes

    # -- life -------------------------------------------------------------------------------------------------
    def start(self) -> bool:
        """True once NVML is initialised; a failed init is retried only after INIT_RETRY_SECONDS."""
        with self._lock:
            if self._initialized:
                return True
            if self.nvml is None or time.monotonic() < self._next_init:
                return False
            try:
                self.call(self.nvml.nvmlInit)
            except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, timeouts...
                self.reason = f"NVML unavailable: {exc.__class__.__name__}: {exc}".rstrip(": ")
                self._next_init = time.monotonic() + self.INIT_RETRY_SECONDS
                return False
            self._initialized = True
            self.reason = None
            return True

    def close(self) -> None:
        with self._lock:
            if self._initialized and self.nvml is not None:
                self.optional(self.nvml.nvmlShutdown)
            self._initialized = False
            self.cache.clear()

    # -- queries every caller needs -----------------------------------------------------------------------------
    def memory(self, handle: Any) -> MemoryInfo | None:
        """Total/used (and driver-reserved) bytes of a device or MIG device. The v2 query where the driver has it:
        its `used` leaves out what the driver reserves, as nvidia-smi does; older drivers get the v1 query."""
        nvml = self.nvml
        assert nvml is not None
        version = getattr(nvml, "nvmlMemory_v2", None)
        if version is not None and self._memory_v2 is not False:
            try:
                info = self.call(nvml.nvmlDeviceGetMemoryInfo, handle, version)
            except NvmlTimeoutError:
                return None
            except TypeError:  # an nvidia-ml-py too old to take a version
                self._memory_v2 = False
            except Exception as exc:
                if self.error_is(exc, *_NO_V2_CODES):
                    self._memory_v2 = False
                    log.debug("NVML has no v2 memory query here (%s): using v1", exc)
                # else e.g. NOT_SUPPORTED on this one device: v1 below, v2 stays in use for the others
            else:
                self._memory_v2 = True
                return _memory(info, getattr(info, "reserved", None))
        info = self.optional(nvml.nvmlDeviceGetMemoryInfo, handle)
        return None if info is None else _memory(info, None)

    @property
    def memory_query(self) -> str:
        """Which memory query is in use: "v2", "v1", or "unknown" before the first reading."""
        return {True: "v2", False: "v1", None: "unknown"}[self._memory_v2]


def _memory(info: Any, reserved: Any) -> MemoryInfo | None:
    total, used = int(info.total), int(info.used)
    if total <= 0:  # unified-memory devices report no memory of their own
        return None
    return MemoryInfo(total=total, used=used, reserved=None if reserved is None else int(reserved))


_shared: NvmlSession | None = None
_shared_lock = threading.Lock()


def shared_session() -> NvmlSession:
    """This process's NVML session (created on first use, shut down at exit)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = NvmlSession(load_pynvml())
        return _shared


def _close_shared() -> None:
    session = _shared
    if session is not None:
        session.close()


def _forget_after_fork() -> None:
    global _shared, _shared_lock
    _shared = None  # the parent's worker thread does not exist here, and NVML must be initialised again
    _shared_lock = threading.Lock()


atexit.register(_close_shared)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
