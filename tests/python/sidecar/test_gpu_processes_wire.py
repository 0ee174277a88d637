"""Who holds my VRAM, on the wire: every process NVML lists on a GPU, in the sample's GpuInfo.processes
(contract 6), heaviest first, camelCase, guarded run or not. NVML is fake_nvml's stand-in (no GPU here); the
processes are real, so user and command come from the system. The `gpu` test checks the real sidecar on a GPU."""

from __future__ import annotations

import getpass
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_nvml import GIB, MIB, FakeGpu, FakeNvml, uuid

from crashguard.monitor.gpu import GPUMonitor
from crashguard.sidecar import protocol as p
from crashguard.sidecar.core import Sidecar
from crashguard.sidecar.settings import Settings


@pytest.fixture
def holders() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", f"holder-{i}"]) for i in range(2)]
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


def test_sample_lists_every_process_on_each_gpu(tmp_path: Path, holders: list[subprocess.Popen[bytes]]) -> None:
    small, big = holders
    gone = 2**22 + 17  # not a process in this pid namespace
    fake = FakeNvml([FakeGpu(uuid(0), total=80 * GIB, used=20 * GIB,
                             compute=[(small.pid, 2 * GIB), (big.pid, 12 * GIB)], graphics=[(gone, None)]),
                     FakeGpu(uuid(1), total=80 * GIB, used=300 * MIB)])
    core = Sidecar(Settings(runs_directory=str(tmp_path / "runs")), lambda method, params: None,
                   gpu=GPUMonitor(nvml=fake))  # type: ignore[arg-type]
    try:
        wire = p.to_wire(core.status())
    finally:
        core.close()
    first, second = wire["gpus"]
    assert [(q["pid"], q["used"]) for q in first["processes"]] == [(big.pid, 12 * GIB), (small.pid, 2 * GIB),
                                                                   (gone, None)]
    shown = first["processes"][0]
    assert set(shown) == {"pid", "name", "user", "command", "used"}
    assert shown["user"] == getpass.getuser() and shown["command"].endswith("holder-1")
    assert first["processes"][2] == {"pid": gone, "name": "?", "user": None, "command": None, "used": None}
    assert second["processes"] == []
