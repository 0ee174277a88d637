"""NVML as Crash Guard reads it, against nvidia-smi and CUDA itself: device memory, a known process's VRAM with its
user and command, and CUDA_VISIBLE_DEVICES mapped to the GPU CUDA really uses."""

from __future__ import annotations

import getpass
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from gpu_helpers import HOLD_MIB, MIB, mib, pid_namespace_note
from training_helpers import child_env

from crashguard.monitor.gpu import GPUMonitor

pytestmark = pytest.mark.gpu


def within(a: float, b: float, of: float, share: float = 0.01) -> bool:
    return abs(a - b) <= share * of


@pytest.mark.gpu_line("NVML total/used vs nvidia-smi (within 1 %)")
def test_nvml_memory_matches_nvidia_smi(smi: Callable[..., list[list[str]]],
                                        record_property: Callable[[str, object], None]) -> None:
    monitor = GPUMonitor()
    before = {g.index: g for g in monitor.read()}
    rows = smi("gpu", "index,uuid,memory.total,memory.used")
    after = {g.index: g for g in monitor.read()}
    figures = []
    for index, uuid, total, used in rows:
        i = int(index)
        ours = before[i]
        assert ours.uuid == uuid
        smi_total, smi_used = int(total) * MIB, int(used) * MIB
        assert ours.total is not None and within(ours.total, smi_total, smi_total)
        # Memory moves between the three reads: NVML before or after nvidia-smi must agree within 1 %.
        assert any(g.used is not None and within(g.used, smi_used, smi_total) for g in (ours, after[i])), \
            (ours.used, after[i].used, smi_used)
        figures.append(f"GPU {i}: total {mib(ours.total)} vs {mib(smi_total)}, used {mib(ours.used)} vs "
                       f"{mib(smi_used)}")
    record_property("figures", f"{'; '.join(figures)} (NVML memory query {monitor.session.memory_query})")


@pytest.mark.gpu_line("per-process VRAM of a known process (user, command)")
def test_a_known_process_and_its_vram(holder: dict[str, Any], smi: Callable[..., list[list[str]]],
                                      record_property: Callable[[str, object], None]) -> None:
    hidden = pid_namespace_note(holder["pid"])
    if hidden:
        pytest.skip(hidden)
    monitor = GPUMonitor()
    found = [(g, p) for g in monitor.read() for p in g.processes if p.pid == holder["pid"]]
    assert found, "NVML does not list the holder"
    (gpu, proc), = found
    apps = {int(pid): int(used) * MIB for pid, used in smi("compute-apps", "pid,used_memory")}
    assert proc.used is not None
    assert proc.used >= HOLD_MIB * MIB  # the tensor, plus the CUDA context
    assert abs(proc.used - apps[holder["pid"]]) <= max(0.01 * proc.used, 2 * MIB)
    assert proc.user == getpass.getuser()
    assert proc.command is not None and proc.command.endswith(f"vram_holder.py {HOLD_MIB} --known-holder")
    assert gpu.uuid == holder["uuid"] or (gpu.uuid is not None and holder["uuid"].startswith("MIG-"))
    record_property("figures", f"pid {proc.pid} ({proc.user}, {proc.name}) on GPU {gpu.index}: {mib(proc.used)} "
                               f"(nvidia-smi {mib(apps[holder['pid']])}; tensor {HOLD_MIB} MiB + CUDA context)")


def _cuda_uuid(environ: dict[str, str]) -> str | None:
    """The UUID of what CUDA itself calls cuda:0 under `environ` (None: no device visible)."""
    code = ("import torch\n"
            "print(str(torch.cuda.get_device_properties(0).uuid) if torch.cuda.device_count() else 'none')")
    out = subprocess.run([sys.executable, "-c", code], env={**child_env(), **environ}, capture_output=True,
                         text=True, timeout=120, check=True).stdout.strip().splitlines()[-1]
    return None if out == "none" else out.removeprefix("GPU-").removeprefix("MIG-")


@pytest.mark.gpu_line("CUDA_VISIBLE_DEVICES -> NVML device (index, UUID, UUID prefix, invalid)")
def test_cuda_visible_devices_maps_to_the_device_cuda_uses(cuda: Any,
                                                           record_property: Callable[[str, object], None]) -> None:
    monitor = GPUMonitor()
    gpus = monitor.read()
    last = gpus[-1]
    assert last.uuid
    forms = {"index": str(last.index), "uuid": last.uuid, "prefix": last.uuid[:12],
             "invalid after": f"{last.index},99", "none": "-1"}
    checked = []
    for what, value in forms.items():
        env = {"CUDA_VISIBLE_DEVICES": value, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
        expected = _cuda_uuid(env)
        mapped = monitor.visible_devices(env).devices
        ours = mapped[0].uuid.removeprefix("GPU-").removeprefix("MIG-") if mapped else None
        assert ours == expected, (what, value, ours, expected)
        checked.append(what)
    record_property("figures", f"cuda:0 = NVML GPU {last.index} as CUDA says, for: {', '.join(checked)}")
