"""Which failures are out-of-memory, which are worth a retry, and which are not.

Classification never imports torch: a CUDA OOM is recognised by its class, wherever torch defined it.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from enum import Enum


class FailureKind(str, Enum):
    CPU_OOM = "cpu_oom"  # RuntimeError from torch's CPU allocator
    CUDA_OOM = "cuda_oom"  # torch.cuda.OutOfMemoryError
    MEMORY_ERROR = "memory_error"  # Python's own MemoryError (numpy, lists, ...)
    MEMORY_PRESSURE = "memory_pressure"  # our MemoryPressureError: over a threshold, nothing failed yet
    TRANSIENT = "transient"  # timeouts, busy devices, interrupted I/O
    FATAL = "fatal"  # a bug or bad input: retrying changes nothing

    @property
    def is_memory(self) -> bool:
        return self in (FailureKind.CPU_OOM, FailureKind.CUDA_OOM, FailureKind.MEMORY_ERROR,
                        FailureKind.MEMORY_PRESSURE)

    @property
    def retryable(self) -> bool:
        return self is not FailureKind.FATAL


class MemoryPressureError(RuntimeError):
    """Memory use is over a threshold (raised by the safe contexts before anything runs out)."""

    def __init__(self, resource: str, fraction: float, threshold: float) -> None:
        super().__init__(f"{resource} memory at {fraction:.0%} is over the {threshold:.0%} threshold")
        self.resource = resource
        self.fraction = fraction
        self.threshold = threshold


@dataclass(frozen=True)
class Failure:
    """What went wrong, without a reference to the exception (its traceback would keep tensors alive)."""

    kind: FailureKind
    error_type: str
    message: str

    def describe(self) -> str:
        first_line = self.message.strip().splitlines()[0] if self.message.strip() else ""
        return f"{self.kind.value} ({self.error_type}: {first_line[:200]})"


_CPU_OOM_MARKERS = ("can't allocate memory", "defaultcpuallocator", "not enough memory", "cannot allocate memory")
_CUDA_OOM_MARKERS = ("cuda out of memory", "cuda error: out of memory", "cublas_status_alloc_failed",
                     "hip out of memory", "mps backend out of memory")
_TRANSIENT_ERRNOS = {errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ETIMEDOUT}


def _is_cuda_oom_class(exc: BaseException) -> bool:
    return any(cls.__name__ == "OutOfMemoryError" and cls.__module__.startswith("torch")
               for cls in type(exc).__mro__)


def classify(exc: BaseException) -> FailureKind:
    if isinstance(exc, MemoryPressureError):
        return FailureKind.MEMORY_PRESSURE
    if _is_cuda_oom_class(exc):
        return FailureKind.CUDA_OOM
    if isinstance(exc, MemoryError):
        return FailureKind.MEMORY_ERROR
    if isinstance(exc, RuntimeError):
        text = str(exc).lower()
        if any(marker in text for marker in _CUDA_OOM_MARKERS):
            return FailureKind.CUDA_OOM
        if any(marker in text for marker in _CPU_OOM_MARKERS):
            return FailureKind.CPU_OOM
        return FailureKind.FATAL
    if isinstance(exc, OSError) and exc.errno == errno.ENOMEM:
        return FailureKind.MEMORY_ERROR
    if isinstance(exc, (TimeoutError, ConnectionError, InterruptedError, BlockingIOError)):
        return FailureKind.TRANSIENT
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return FailureKind.TRANSIENT
    return FailureKind.FATAL


def describe_failure(exc: BaseException) -> Failure:
    return Failure(kind=classify(exc), error_type=type(exc).__name__, message=str(exc))


def is_oom(exc: BaseException) -> bool:
    """True for an allocation that failed (CPU, CUDA or Python), the errors a smaller batch can fix."""
    return classify(exc) in (FailureKind.CPU_OOM, FailureKind.CUDA_OOM, FailureKind.MEMORY_ERROR)
