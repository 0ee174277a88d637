"""`crashguard monitor`'s screen: per GPU, who holds its memory (every process, user, command)."""

from __future__ import annotations

import time

from crashguard.cli.monitor_view import render
from crashguard.monitor.gpu import GpuProcess, GpuReading
from crashguard.monitor.host import read_ram
from crashguard.monitor.snapshot import Snapshot
from crashguard.monitor.thresholds import MemoryStatus, Thresholds

GIB = 2**30


def test_each_gpu_lists_its_processes_heaviest_first() -> None:
    gpu = GpuReading(0, "NVIDIA H200", 140 * GIB, 30 * GIB, 40, processes=[  # GPUMonitor's order: heaviest first
        GpuProcess(303, 25 * GIB, "python3.11", "bob", "python -m crashguard train --config big.json"),
        GpuProcess(101, 2 * GIB, "python3.11", "alice", "python train.py --config a.json"),
        GpuProcess(202, None, "?", None, None, "graphics"),
    ])
    idle = GpuReading(1, "NVIDIA H200", 140 * GIB, 1 * GIB, 0)
    screen = render(Snapshot(time.time(), read_ram(), MemoryStatus.NORMAL, [gpu, idle]), Thresholds(0.8, 0.9),
                    colour=False)
    lines = screen.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("GPU 0"))
    assert lines[start + 1].split() == ["pid", "VRAM", "user", "command"]
    assert lines[start + 2].split()[:4] == ["303", "25.0", "GiB", "bob"]
    assert lines[start + 3].split()[:4] == ["101", "2.0", "GiB", "alice"]
    assert lines[start + 4].split() == ["202", "n/a", "?", "?", "(not", "visible", "from", "here)"]
    assert lines[start + 5].startswith("GPU 1") and lines[start + 6].strip() == "no processes on this GPU"


def test_memory_stalls_are_shown_when_the_kernel_reports_them() -> None:
    from crashguard.monitor.pressure import parse_psi

    psi = parse_psi("some avg10=12.50 avg60=3.10 avg300=0.70 total=2287963\n"
                    "full avg10=3.95 avg60=0.97 avg300=0.21 total=722599\n")
    snap = Snapshot(time.time(), read_ram(), MemoryStatus.NORMAL, pressure=psi)
    assert "Stall some 12.5%, full 4.0% of the last 10 s waiting for memory (PSI)" in render(snap, Thresholds(),
                                                                                              colour=False)
    assert snap.to_dict()["pressure"]["some"]["avg10"] == 12.5
    assert "Stall" not in render(Snapshot(time.time(), read_ram(), MemoryStatus.NORMAL), Thresholds(), colour=False)
