"""The real sidecar (`crashguard serve` over stdio) on a GPU: the VRAM gauge's figure is nvidia-smi's, and the
sample says who holds the memory (a known process, with its VRAM, user and command)."""

from __future__ import annotations

import getpass
from collections.abc import Callable
from typing import Any

import pytest
from gpu_helpers import HOLD_MIB, MIB, mib, pid_namespace_note
from sidecar_session import sidecar

pytestmark = pytest.mark.gpu


@pytest.mark.gpu_line("VRAM gauge the real sidecar sends (vs nvidia-smi), with the process list")
async def test_the_sidecar_sends_nvidia_smis_figures_and_who_holds_them(
        holder: dict[str, Any], smi: Callable[..., list[list[str]]],
        record_property: Callable[[str, object], None]) -> None:
    pid = holder["pid"]
    hidden = pid_namespace_note(pid)  # in a container NVML's pids are the host's: the list cannot name the holder

    def lists_holder(sample: Any) -> bool:
        return hidden is not None or any(q["pid"] == pid for g in sample["gpus"] for q in g.get("processes", []))

    async with sidecar({"sampleIntervalMs": 500}) as s:
        sample = await s.wait_for("crashGuard/sample", lambda x: bool(x["gpus"]) and lists_holder(x), timeout=30)
        rows = {int(i): (int(total) * MIB, int(used) * MIB) for i, total, used in
                smi("gpu", "index,memory.total,memory.used")}
        later = await s.wait_for("crashGuard/sample", lambda x: x["seq"] > sample["seq"], timeout=10)
    figures = []
    for gpu, after in zip(sample["gpus"], later["gpus"], strict=True):
        total, used = rows[gpu["index"]]
        assert gpu["total"] == pytest.approx(total, rel=0.01)
        assert any(abs(g["used"] - used) <= 0.01 * total for g in (gpu, after)), (gpu["used"], after["used"], used)
        assert gpu["percent"] == pytest.approx(100 * gpu["used"] / gpu["total"], abs=0.01)
        figures.append(f"GPU {gpu['index']} gauge {gpu['percent']:.1f} % ({mib(gpu['used'])}; nvidia-smi "
                       f"{mib(used)})")
    if hidden:
        record_property("figures", f"{'; '.join(figures)}; process list not checked: {hidden}")
        return
    (entry,) = [q for g in sample["gpus"] for q in g["processes"] if q["pid"] == pid]
    assert entry["used"] >= HOLD_MIB * MIB and entry["user"] == getpass.getuser()
    assert entry["command"].endswith("--known-holder")
    record_property("figures", f"{'; '.join(figures)}; holder pid {pid}: {mib(entry['used'])}, {entry['user']}")
