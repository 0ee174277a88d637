"""Pressure, not only percent: a real stall raises a warning while RAM use is far below its percent threshold.

A process thrashes inside a 64 MiB memory group this test creates: it reads a 128 MiB file of its own again and
again, so its pages are evicted and read back from disk over and over and it stalls on memory (PSI "some"), while
the machine's RAM hardly moves. The real sidecar, reading /proc/pressure/memory every sample, warns: "Memory
pressure: tasks stalled N% of the last 4 s waiting for memory", with RAM at its usual level; the forecast says so
and the history keeps the level change."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from locations import CHILDREN
from memory_groups import MakeGroup
from sidecar_session import sidecar

from crashguard.sidecar import protocol as p

MiB = 2**20
THRESHOLD = 5.0  # % of the window stalled ("some"); the default is 20, this machine's stall reaches ~20 in 15 s


def filesystem_of(path: Path) -> str:
    best, kind = "", ""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, mount, fstype, *_ = line.split()
        if str(path).startswith(mount) and len(mount) > len(best):
            best, kind = mount, fstype
    return kind


async def test_a_real_stall_warns_below_the_percent_threshold(memory_group: MakeGroup, tmp_path: Path) -> None:
    if not Path("/proc/pressure/memory").exists():
        pytest.skip("no /proc/pressure/memory: this kernel has no pressure stall information (psi=1)")
    if filesystem_of(tmp_path) in ("tmpfs", "ramfs"):
        pytest.skip(f"{tmp_path} is in RAM ({filesystem_of(tmp_path)}): its pages cannot be evicted to thrash")
    ram_now = psutil.virtual_memory().percent
    warning = 80.0 if ram_now < 65 else min(99.0, ram_now + 15)  # a shared machine may already be busy
    group = memory_group(64 * MiB)
    settings = {"sampleIntervalMs": 250, "pressureSomePercent": THRESHOLD, "pressureFullPercent": 50,
                "pressureSeconds": 4, "ramWarningPercent": warning, "ramCriticalPercent": min(100.0, warning + 5)}
    async with sidecar(settings) as session:
        await session.wait_samples(2)
        thrash = group.spawn([sys.executable, str(CHILDREN / "thrash.py"), "--file", str(tmp_path / "pages.bin"),
                              "--mb", "128", "--seconds", "40"], stderr=subprocess.PIPE)
        try:
            warned = await session.wait_for(p.WARNING, lambda w: w["resource"] == "Memory pressure"
                                            and w["level"] == "warning", timeout=45)
            sample = await session.wait_for(p.SAMPLE, lambda s: s["pressure"] and s["pressure"]["level"] == "warning")
        finally:
            thrash.kill()
            thrash.wait()
        history = await session.request(p.HISTORY, {})
    assert warned["percent"] >= THRESHOLD and warned["thresholdPercent"] in (THRESHOLD, 50)
    assert warned["message"].startswith("Memory pressure: tasks stalled") and ", with RAM at" in warned["message"]
    assert sample["ram"]["level"] == "normal" and sample["ram"]["percent"] < warning  # percent says all is well
    assert sample["pressure"]["some"] >= THRESHOLD * 0.75 and sample["pressure"]["seconds"] >= 2
    assert any(f["kind"] == "pressure" and f["resource"] == "Memory pressure" for f in sample["forecasts"])
    assert sample["level"] == "warning"  # the worst level of the machine counts the pressure
    assert any(e["kind"] == "level" and e["resource"] == "Memory pressure" and e["level"] == "warning"
               for e in history["events"])
