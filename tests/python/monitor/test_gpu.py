"""GPUMonitor without a GPU (the real NVML library is absent here), and above a stand-in NVML (fake_nvml.py):
failing and hung queries, the v2 memory query, one NVML session per process, the process lists merged and named
(real processes: their user and command are read from /proc), gpu_safe_context under CUDA_VISIBLE_DEVICES."""

from __future__ import annotations

import getpass
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from fake_nvml import GIB, MIB, FakeGpu, FakeMig, FakeNvml, mig_uuid, uuid

from crashguard import GPUMonitor, MemoryPressureError
from crashguard.guard import gpu_safe_context
from crashguard.monitor import nvml as nvml_module
from crashguard.monitor.gpu_processes import merge_process_lists
from crashguard.monitor.nvml import NvmlSession


def _nvml_available() -> bool:
    return bool(GPUMonitor().read())


def test_no_gpu_gives_empty_list_and_reason_without_raising() -> None:
    if _nvml_available():
        pytest.skip("this machine has a GPU")
    monitor = GPUMonitor()
    started = time.perf_counter()
    assert monitor.read() == []
    assert monitor.available is False
    assert monitor.reason and "NVML" in monitor.reason
    assert monitor.process_vram() == {}
    assert monitor.read_cuda_device(0) is None
    assert monitor.visible_devices().devices == []
    assert time.perf_counter() - started < 1.0
    monitor.close()


def test_gpu_safe_context_is_a_no_op_without_gpu() -> None:
    if _nvml_available():
        pytest.skip("this machine has a GPU")
    with gpu_safe_context(threshold=0.0001) as fraction:
        assert fraction is None


def test_failed_queries_degrade_to_none() -> None:
    monitor = GPUMonitor(nvml=FakeNvml([FakeGpu(uuid(0), name="Fake GPU", total=1000 * MIB, used=250 * MIB,
                                                 utilization=None, compute=[(42, 100 * MIB), (43, None)])]))  # type: ignore[arg-type]
    (gpu,) = monitor.read()
    assert gpu.name == "Fake GPU" and gpu.uuid == uuid(0)
    assert gpu.percent == 25.0
    assert gpu.utilization is None  # "n/a", not an exception
    assert monitor.process_vram() == {42: 100 * MIB}
    monitor.close()


def test_hung_nvml_call_times_out_to_none() -> None:
    fake = FakeNvml([FakeGpu(uuid(0))])
    monitor = GPUMonitor(timeout=0.2, nvml=fake)  # type: ignore[arg-type]
    assert monitor.read()[0].used is not None
    fake.hang = 1.0
    started = time.perf_counter()
    (gpu,) = monitor.read()
    assert gpu.used is None and gpu.total is None
    # While the hung call is still blocked, later readings are n/a at once instead of queueing behind it.
    (again,) = monitor.read()
    assert again.used is None and again.utilization is None
    assert time.perf_counter() - started < 0.8
    monitor.close()


def test_init_failure_is_retried_later_not_every_sample() -> None:
    fake = FakeNvml([FakeGpu(uuid(0))], init_error=9)  # NVML_ERROR_DRIVER_NOT_LOADED
    monitor = GPUMonitor(nvml=fake)  # type: ignore[arg-type]
    for _ in range(5):
        assert monitor.read() == []
    assert fake.calls["nvmlInit"] == 1
    assert "NVML error 9" in (monitor.reason or "")


def test_v2_memory_query_where_the_driver_has_it() -> None:
    gpu = FakeGpu(uuid(0), total=80 * GIB, used=8 * GIB, reserved=GIB // 2)
    with_v2 = GPUMonitor(nvml=FakeNvml([gpu]))  # type: ignore[arg-type]
    assert with_v2.read()[0].used == 8 * GIB  # without the driver's reservation, as nvidia-smi shows it
    assert with_v2.session.memory_query == "v2"
    old = FakeNvml([gpu], has_v2=False)
    without = GPUMonitor(nvml=old)  # type: ignore[arg-type]
    for _ in range(3):
        assert without.read()[0].used == 8 * GIB + GIB // 2  # v1: the reservation counts as used
    assert without.session.memory_query == "v1"
    assert old.calls["nvmlDeviceGetMemoryInfo_v2"] == 1  # asked once, then v1 only
    assert old.calls["nvmlDeviceGetMemoryInfo"] == 3


def test_one_nvml_session_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml([FakeGpu(uuid(0), total=10 * GIB, used=GIB)])
    monkeypatch.setattr(nvml_module, "_shared", NvmlSession(fake))  # type: ignore[arg-type]
    for _ in range(3):
        assert GPUMonitor().read()[0].used == GIB
        with gpu_safe_context(threshold=0.9) as fraction:
            assert fraction == pytest.approx(0.1)
    assert fake.calls["nvmlInit"] == 1
    assert "nvmlShutdown" not in fake.calls  # closing a monitor leaves the process's session alone


def test_gpu_safe_context_guards_the_gpu_cuda_sees(monkeypatch: pytest.MonkeyPatch) -> None:
    """cuda:0 is NVML's GPU 1 under CUDA_VISIBLE_DEVICES=1: the guard must look at GPU 1 (full), not GPU 0."""
    fake = FakeNvml([FakeGpu(uuid(0), total=10 * GIB, used=GIB), FakeGpu(uuid(1), total=10 * GIB, used=9.7 * GIB)])
    monkeypatch.setattr(nvml_module, "_shared", NvmlSession(fake))  # type: ignore[arg-type]
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    with pytest.raises(MemoryPressureError, match=r"GPU cuda:0 .*97"), gpu_safe_context(threshold=0.9, cleanup=False):
        pass
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"{uuid(0)},{uuid(1)}")
    with gpu_safe_context(device=0, threshold=0.9, cleanup=False) as fraction:
        assert fraction == pytest.approx(0.1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with gpu_safe_context(device=1, threshold=0.9) as fraction:
        assert fraction is None  # no cuda:1 in this process: nothing to guard


def test_compute_and_graphics_lists_merge_by_pid() -> None:
    entry = lambda pid, used: type("P", (), {"pid": pid, "usedGpuMemory": used})()  # noqa: E731
    merged = merge_process_lists([entry(1, 100), entry(2, None), entry(3, 1 << 64 - 1)],
                                 [entry(2, 50), entry(4, 70), entry(1, 100)])
    assert merged == [(1, 100, "compute+graphics"), (2, 50, "compute+graphics"), (3, None, "compute"),
                      (4, 70, "graphics")]


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A real process for NVML to "list": its user and command must be read from the system."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "--holds-vram"])
    yield proc
    proc.kill()
    proc.wait()


def test_every_process_on_every_gpu_with_user_and_command(sleeper: subprocess.Popen[bytes]) -> None:
    gone = 2**22 + 17  # above pid_max's default: not a process here (another pid namespace, or exited)
    fake = FakeNvml([
        FakeGpu(uuid(0), compute=[(sleeper.pid, 3 * GIB)], graphics=[(sleeper.pid, 3 * GIB), (gone, 200 * MIB)]),
        FakeGpu(uuid(1), mig_enabled=True, compute=[(sleeper.pid, None)],  # MIG: per-process figures per instance
                migs=[FakeMig(mig_uuid(0), 1, 0, compute=[(sleeper.pid, 5 * GIB)])], parent_memory_needs_root=True),
    ])
    monitor = GPUMonitor(nvml=fake)  # type: ignore[arg-type]
    first, second = monitor.read()
    mine = next(p for p in first.processes if p.pid == sleeper.pid)
    assert (mine.used, mine.kind, mine.user) == (3 * GIB, "compute+graphics", getpass.getuser())
    assert mine.command is not None and mine.command.endswith("time.sleep(60)' --holds-vram")
    assert mine.name.startswith("python")
    other = next(p for p in first.processes if p.pid == gone)
    assert (other.used, other.user, other.command, other.name) == (200 * MIB, None, None, "?")
    assert [(p.pid, p.used) for p in second.processes] == [(sleeper.pid, 5 * GIB)]
    assert (second.total, second.used) == (10 * GIB, GIB)  # summed over MIG devices: the GPU's own query needs root
    assert monitor.process_vram() == {sleeper.pid: 8 * GIB, gone: 200 * MIB}
    monitor.close()


@pytest.mark.gpu
def test_real_gpu_reading() -> None:
    if not _nvml_available():
        pytest.skip("no NVIDIA GPU on this machine")
    gpus = GPUMonitor().read()
    assert gpus and all(g.total and g.used is not None and g.uuid for g in gpus)
