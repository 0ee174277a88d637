"""GPUMonitor without a GPU (the real NVML library is absent here), with NVML failing per field, and hung."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from python_backend import GPUMonitor
from python_backend.guard import gpu_safe_context

MIB = 2**20


def _nvml_available() -> bool:
    monitor = GPUMonitor()
    try:
        return bool(monitor.read())
    finally:
        monitor.close()


def test_no_gpu_gives_empty_list_and_reason_without_raising() -> None:
    if _nvml_available():
        pytest.skip("this machine has a GPU")
    monitor = GPUMonitor()
    started = time.perf_counter()
    assert monitor.read() == []
    assert monitor.available is False
    assert monitor.reason and "NVML" in monitor.reason
    assert monitor.process_vram() == {}
    assert time.perf_counter() - started < 1.0
    monitor.close()


def test_gpu_safe_context_is_a_no_op_without_gpu() -> None:
    if _nvml_available():
        pytest.skip("this machine has a GPU")
    with gpu_safe_context(threshold=0.0001) as fraction:
        assert fraction is None


class _FakeNvml:
    """Stands in for the driver, which cannot exist on these machines: one device, some queries failing."""

    class NVMLError(Exception):
        pass

    def __init__(self, hang: float = 0.0) -> None:
        self.hang = hang

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return f"h{index}"

    def nvmlDeviceGetName(self, handle: str) -> bytes:
        return b"Fake GPU"

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> SimpleNamespace:
        time.sleep(self.hang)
        return SimpleNamespace(total=1000 * MIB, used=250 * MIB, free=750 * MIB)

    def nvmlDeviceGetUtilizationRates(self, handle: str) -> SimpleNamespace:
        raise self.NVMLError("Not Supported")

    def nvmlDeviceGetComputeRunningProcesses(self, handle: str) -> list[SimpleNamespace]:
        return [SimpleNamespace(pid=42, usedGpuMemory=100 * MIB), SimpleNamespace(pid=43, usedGpuMemory=None)]


def test_failed_queries_degrade_to_none() -> None:
    monitor = GPUMonitor(nvml=_FakeNvml())  # type: ignore[arg-type]
    (gpu,) = monitor.read()
    assert gpu.name == "Fake GPU"
    assert gpu.percent == 25.0
    assert gpu.utilization is None  # "n/a", not an exception
    assert monitor.process_vram() == {42: 100 * MIB}
    monitor.close()


def test_hung_nvml_call_times_out_to_none() -> None:
    monitor = GPUMonitor(timeout=0.2, nvml=_FakeNvml(hang=1.0))  # type: ignore[arg-type]
    started = time.perf_counter()
    (gpu,) = monitor.read()
    assert gpu.used is None and gpu.total is None
    # While the hung call is still blocked, later readings are n/a at once instead of queueing behind it.
    (again,) = monitor.read()
    assert again.name == "n/a"
    assert time.perf_counter() - started < 0.8
    monitor.close()


def test_init_failure_is_retried_later_not_every_sample() -> None:
    class Broken(_FakeNvml):
        calls = 0

        def nvmlInit(self) -> None:
            Broken.calls += 1
            raise self.NVMLError("Driver Not Loaded")

    monitor = GPUMonitor(nvml=Broken())  # type: ignore[arg-type]
    for _ in range(5):
        assert monitor.read() == []
    assert Broken.calls == 1
    assert "Driver Not Loaded" in (monitor.reason or "")


@pytest.mark.gpu
def test_real_gpu_reading() -> None:
    if not _nvml_available():
        pytest.skip("no NVIDIA GPU on this machine")
    monitor = GPUMonitor()
    gpus = monitor.read()
    assert gpus and all(g.total and g.used is not None for g in gpus)
    monitor.close()
