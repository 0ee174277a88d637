"""A stand-in for the NVIDIA driver's NVML, which cannot exist on these machines: GPUs, MIG devices and process
lists described as data, answering the nvidia-ml-py calls Crash Guard makes with the same shapes and errors.
Only for the logic above NVML (CUDA_VISIBLE_DEVICES mapping, MIG, v1/v2 memory, process lists); the `gpu`-marked
tests check the same paths against the real driver."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

MIB = 2**20
GIB = 2**30


@dataclass
class FakeMig:
    uuid: str
    gpu_instance: int
    compute_instance: int
    total: int = 10 * GIB
    used: int = 1 * GIB
    compute: list[tuple[int, int | None]] = field(default_factory=list)


@dataclass
class FakeGpu:
    uuid: str
    name: str = "NVIDIA H200"
    total: int = 140 * GIB
    used: int = 14 * GIB
    reserved: int = 512 * MIB
    utilization: int | None = 50
    compute: list[tuple[int, int | None]] = field(default_factory=list)  # (pid, bytes or None)
    graphics: list[tuple[int, int | None]] = field(default_factory=list)
    mig_enabled: bool | None = None  # None: MIG not supported (raises NOT_SUPPORTED)
    migs: list[FakeMig | None] = field(default_factory=list)  # None: an empty MIG slot
    parent_memory_needs_root: bool = False


class FakeNvmlError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


class FakeNvml:
    NVMLError = FakeNvmlError
    NVML_ERROR_NOT_SUPPORTED = 3
    NVML_ERROR_NO_PERMISSION = 4
    NVML_ERROR_NOT_FOUND = 6
    NVML_ERROR_FUNCTION_NOT_FOUND = 13
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25
    NVML_DEVICE_MIG_ENABLE = 1
    nvmlMemory_v2 = 0x02000028

    def __init__(self, gpus: list[FakeGpu], has_v2: bool = True, hang: float = 0.0,
                 init_error: int | None = None) -> None:
        self.gpus = gpus
        self.has_v2 = has_v2
        self.hang = hang
        self.init_error = init_error
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    # -- life ----------------------------------------------------------------------------------------------
    def nvmlInit(self) -> None:
        self._count("nvmlInit")
        if self.init_error is not None:
            raise FakeNvmlError(self.init_error)

    def nvmlShutdown(self) -> None:
        self._count("nvmlShutdown")

    # -- devices -------------------------------------------------------------------------------------------
    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> tuple[str, int]:
        if not 0 <= index < len(self.gpus):
            raise FakeNvmlError(2)  # INVALID_ARGUMENT
        return ("gpu", index)

    def _gpu(self, handle: Any) -> FakeGpu:
        return self.gpus[handle[1]]

    def _mig(self, handle: Any) -> FakeMig:
        mig = self.gpus[handle[1]].migs[handle[2]]
        assert mig is not None
        return mig

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        return self._gpu(handle).uuid if handle[0] == "gpu" else self._mig(handle).uuid

    def nvmlDeviceGetName(self, handle: Any) -> bytes:
        gpu = self._gpu(handle)
        if handle[0] == "gpu":
            return gpu.name.encode()
        return f"{gpu.name} MIG {self._mig(handle).gpu_instance}g".encode()

    def nvmlDeviceGetMigMode(self, handle: Any) -> list[int]:
        gpu = self._gpu(handle)
        if gpu.mig_enabled is None:
            raise FakeNvmlError(self.NVML_ERROR_NOT_SUPPORTED)
        mode = 1 if gpu.mig_enabled else 0
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: Any) -> int:
        return len(self._gpu(handle).migs)

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: Any, index: int) -> tuple[str, int, int]:
        migs = self._gpu(handle).migs
        if index >= len(migs) or migs[index] is None:
            raise FakeNvmlError(self.NVML_ERROR_NOT_FOUND)
        return ("mig", handle[1], index)

    def nvmlDeviceGetGpuInstanceId(self, handle: Any) -> int:
        return self._mig(handle).gpu_instance

    def nvmlDeviceGetComputeInstanceId(self, handle: Any) -> int:
        return self._mig(handle).compute_instance

    # -- readings ------------------------------------------------------------------------------------------
    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: int | None = None) -> SimpleNamespace:
        self._count(f"nvmlDeviceGetMemoryInfo{'_v2' if version else ''}")
        time.sleep(self.hang)
        if version and not self.has_v2:
            raise FakeNvmlError(self.NVML_ERROR_FUNCTION_NOT_FOUND)
        if handle[0] == "mig":
            mig = self._mig(handle)
            return SimpleNamespace(total=mig.total, used=mig.used, free=mig.total - mig.used,
                                   **({"reserved": 0, "version": version} if version else {}))
        gpu = self._gpu(handle)
        if gpu.parent_memory_needs_root:
            raise FakeNvmlError(self.NVML_ERROR_NO_PERMISSION)
        if version:  # v2: `used` without the driver's reservation, as nvidia-smi shows it
            return SimpleNamespace(version=version, total=gpu.total, reserved=gpu.reserved, used=gpu.used,
                                   free=gpu.total - gpu.used - gpu.reserved)
        return SimpleNamespace(total=gpu.total, used=gpu.used + gpu.reserved, free=gpu.total - gpu.used - gpu.reserved)

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> SimpleNamespace:
        if handle[0] == "mig" or self._gpu(handle).utilization is None:
            raise FakeNvmlError(self.NVML_ERROR_NOT_SUPPORTED)
        return SimpleNamespace(gpu=self._gpu(handle).utilization, memory=10)

    @staticmethod
    def _procs(entries: list[tuple[int, int | None]]) -> list[SimpleNamespace]:
        return [SimpleNamespace(pid=pid, usedGpuMemory=used, gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF)
                for pid, used in entries]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[SimpleNamespace]:
        if handle[0] == "mig":
            return self._procs(self._mig(handle).compute)
        return self._procs(self._gpu(handle).compute)

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: Any) -> list[SimpleNamespace]:
        if handle[0] == "mig":
            return []
        return self._procs(self._gpu(handle).graphics)


def uuid(n: int) -> str:
    """A GPU UUID in nvidia-smi's format, distinct per n (n < 16) and sharing its first 4 hex digits with the rest."""
    return f"GPU-8932{n:x}f37-d72c-4106-c12f-20bd9faed9f{n:x}"


def mig_uuid(n: int) -> str:
    return f"MIG-1c2d{n:x}a4b-0000-5555-aaaa-00000000000{n:x}"
