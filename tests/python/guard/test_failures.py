"""Failure classification on real exceptions, including real torch allocation failures."""

from __future__ import annotations

import errno

import pytest

from crashguard.guard import FailureKind, MemoryPressureError, classify, is_oom


def test_real_cpu_oom_from_torch() -> None:
    torch = pytest.importorskip("torch")
    with pytest.raises(RuntimeError) as caught:
        torch.empty(2**42, dtype=torch.uint8)  # 4 TiB: refused by the allocator on any workstation
    assert classify(caught.value) is FailureKind.CPU_OOM
    assert is_oom(caught.value)


def test_cuda_oom_class_is_recognised_without_a_gpu() -> None:
    torch = pytest.importorskip("torch")
    assert classify(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")) \
        is FailureKind.CUDA_OOM


@pytest.mark.parametrize(("exc", "kind"), [
    (MemoryError(), FailureKind.MEMORY_ERROR),
    (RuntimeError("CUDA error: out of memory"), FailureKind.CUDA_OOM),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:118] DefaultCPUAllocator: can't allocate memory"),
     FailureKind.CPU_OOM),
    (OSError(errno.ENOMEM, "Cannot allocate memory"), FailureKind.MEMORY_ERROR),
    (TimeoutError(), FailureKind.TRANSIENT),
    (ConnectionResetError(), FailureKind.TRANSIENT),
    (OSError(errno.EBUSY, "busy"), FailureKind.TRANSIENT),
    (MemoryPressureError("RAM", 0.95, 0.9), FailureKind.MEMORY_PRESSURE),
    (RuntimeError("shape mismatch"), FailureKind.FATAL),
    (ValueError("bad input"), FailureKind.FATAL),
    (FileNotFoundError(errno.ENOENT, "x"), FailureKind.FATAL),
])
def test_classification(exc: BaseException, kind: FailureKind) -> None:
    assert classify(exc) is kind
    assert kind.retryable == (kind is not FailureKind.FATAL)


def test_real_python_memory_error() -> None:
    with pytest.raises(MemoryError) as caught:
        bytearray(2**62)
    assert classify(caught.value) is FailureKind.MEMORY_ERROR
