"""RAM readings against the kernel's own /proc/meminfo."""

from __future__ import annotations

from pathlib import Path

import psutil

from crashguard import MemoryMonitor
from crashguard.monitor.host import read_ram


def _meminfo() -> dict[str, int]:
    values = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, rest = line.split(":", 1)
        values[key] = int(rest.split()[0]) * 1024
    return values


def test_physical_reading_matches_proc_meminfo() -> None:
    # An empty cgroup tree: no limit applies, so the figures are the machine's.
    reading = read_ram(cgroup_root=Path("/nonexistent"))
    info = _meminfo()
    assert reading.limit_source == "physical"
    assert reading.total == info["MemTotal"]
    # MemAvailable moves between the two reads; 1 % of RAM is far above that noise and far below free-vs-available.
    assert abs(reading.available - info["MemAvailable"]) < 0.01 * info["MemTotal"]
    assert reading.used == reading.total - reading.available
    assert reading.swap_total == info["SwapTotal"]


def test_used_is_total_minus_available_not_minus_free(tmp_path: Path) -> None:
    """A machine whose RAM is mostly page cache (free 1 GiB, available 10 GiB of 16): "total - free" would say 94 %
    used; the kernel can drop the cache at once, so used is total - available, 37.5 %."""
    meminfo = tmp_path / "meminfo"
    gib_kb = 2**20
    meminfo.write_text(f"MemTotal: {16 * gib_kb} kB\nMemFree: {1 * gib_kb} kB\nMemAvailable: {10 * gib_kb} kB\n"
                       f"Buffers: 1024 kB\nCached: {8 * gib_kb} kB\nSwapCached: 0 kB\n"
                       f"SwapTotal: {2 * gib_kb} kB\nSwapFree: {2 * gib_kb - 1024} kB\n")
    reading = read_ram(cgroup_root=Path("/nonexistent"), meminfo=meminfo)
    assert (reading.total, reading.available, reading.used) == (16 * 2**30, 10 * 2**30, 6 * 2**30)
    assert reading.percent == 37.5 and reading.limit_source == "physical"
    assert (reading.swap_total, reading.swap_used) == (2 * 2**30, 2**20)


def test_check_memory_seed_api() -> None:
    result = MemoryMonitor().check_memory()
    assert result["status"] in ("normal", "warning", "critical")
    for key in ("percent", "used", "available", "total", "swap_percent", "limit_source"):
        assert key in result
    assert abs(result["percent"] - psutil.virtual_memory().percent) < 5 or result["limit_source"] != "physical"


def test_status_follows_thresholds() -> None:
    percent = MemoryMonitor().check_memory()["percent"] / 100
    assert MemoryMonitor(warning=0.999, critical=1.0).check_memory()["status"] == "normal"
    low_warning = max(0.0001, percent / 2)
    assert MemoryMonitor(warning=low_warning, critical=1.0).check_memory()["status"] == "warning"
    assert MemoryMonitor(warning=low_warning, critical=low_warning).check_memory()["status"] == "critical"
