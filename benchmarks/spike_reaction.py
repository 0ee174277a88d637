"""How soon the real sidecar sees a spike cross the critical threshold, beside a loop sampling the same figure at the
fixed configured interval (the sidecar before issue 22). Part of `python -m benchmarks.sidecar_cost`.

In a memory group this module creates and removes (its limit is the machine's, as in a container; needs a writable
memory cgroup: tests/python/helpers/memory_groups.py), the sidecar (`crashguard serve`, over stdio) and the fixed
loop (`read_ram`, the group's figure, at the interval) watch a hog growing at `rate_mb` MiB/s to 90 % of the limit,
past a critical threshold `to_limit` below it. Each round starts at another phase of the fixed loop's ticks. For
each: when RAM crossed critical (interpolated between the sidecar's samples on both sides of it) and how long after
that each of the two had a reading at or above it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HELPERS = Path(__file__).resolve().parents[1] / "tests" / "python"
sys.path[:0] = [str(HELPERS / "helpers"), str(HELPERS / "children")]

import memory_hog  # noqa: E402
from memory_groups import MemoryGroup, remove, writable_parent  # noqa: E402

GiB = 2**30
HOG_FILL = 0.9

# The fixed loop: `read_ram` (the group's limit and use, as the sidecar reads it) every argv[1] seconds, steadily.
_FIXED = """
import sys, time
from crashguard.monitor.cgroup import CgroupWatch
from crashguard.monitor.host import read_ram
interval, watch, next_at = float(sys.argv[1]), CgroupWatch(), time.monotonic()
while True:
    ram = read_ram(cgroup=watch.read)
    print(time.time(), ram.used, flush=True)
    next_at += interval
    time.sleep(max(0.0, next_at - time.monotonic()))
"""


def _join(group: MemoryGroup, argv: list[str]) -> list[str]:
    return ["sh", "-c", 'echo $$ > "$1" && shift && exec "$@"', "join", str(group.path / "cgroup.procs"), *argv]


async def _drain(stream: Any) -> None:
    while await stream.read(65536):
        pass


def _crossing(samples: list[dict[str, Any]], since: float, threshold: float) -> tuple[float, float] | None:
    """(when use crossed `threshold`, interpolated; the first sample at or above it), after `since`."""
    after = [x for x in samples if x["time"] >= since]
    for before, first in itertools.pairwise(after):
        u0, u1 = before["ram"]["used"], first["ram"]["used"]
        if u0 < threshold <= u1:
            return before["time"] + (threshold - u0) / (u1 - u0) * (first["time"] - before["time"]), first["time"]
    return None


async def _watch(group: MemoryGroup, interval_ms: int, rounds: int, rate_mb: int, to_limit: int, limit: int,
                 work: Path) -> dict[str, Any]:
    from lsprotocol import types as lsp
    from pygls.lsp.client import LanguageClient

    from crashguard.sidecar import protocol as p
    from crashguard.sidecar.server import plain_json_converter

    samples: list[dict[str, Any]] = []
    client = LanguageClient("crashguard-bench", "1", converter_factory=plain_json_converter)
    client.feature(p.SAMPLE)(lambda ls, params: samples.append(params))
    for method in {*p.NOTIFICATIONS, lsp.WINDOW_LOG_MESSAGE} - {p.SAMPLE}:  # only samples matter here
        client.feature(method)(lambda ls, params: None)
    critical = round(100.0 * (limit - to_limit) / limit, 2)
    threshold = critical / 100 * limit
    fixed_out = work / "fixed.txt"
    with fixed_out.open("w") as out:
        fixed = group.spawn([sys.executable, "-c", _FIXED, str(interval_ms / 1000)], stdout=out)
    await client.start_io(*_join(group, [sys.executable, "-m", "crashguard", "serve"]))
    assert client._server is not None and client._server.stderr is not None
    drain = asyncio.ensure_future(_drain(client._server.stderr))  # a full stderr pipe would block the server
    rows: list[dict[str, float]] = []
    try:
        await client.initialize_async(lsp.InitializeParams(capabilities=lsp.ClientCapabilities(),
                                                           initialization_options={"settings": {
                                                               "sampleIntervalMs": interval_ms,
                                                               "runsDirectory": str(work / "runs"),
                                                               "ramWarningPercent": critical - 10,
                                                               "ramCriticalPercent": critical}}))
        client.initialized(lsp.InitializedParams())
        await asyncio.sleep(2.0)
        for i in range(rounds):
            await asyncio.sleep((i * 0.37) % 1.0 * interval_ms / 1000)  # another phase of the fixed loop's ticks
            target = int(HOG_FILL * limit) - samples[-1]["ram"]["used"]
            started = time.time()
            hog = group.spawn(memory_hog.command(target, work / "signals", hold=0.5, rate_mb=rate_mb))
            await asyncio.to_thread(hog.wait)
            await asyncio.sleep(1.5)  # freed: back to where it was, a few quiet samples
            seen = _crossing(samples, started, threshold)
            fixed_seen = [float(t) for t, used in (line.split() for line in fixed_out.read_text().splitlines())
                          if float(t) >= started and int(used) >= threshold]
            if seen is not None and fixed_seen:
                rows.append({"crossed": seen[0], "sidecar": seen[1] - seen[0], "fixed": fixed_seen[0] - seen[0]})
        await client.shutdown_async(None)
        client.exit(None)
    finally:
        await client.stop()
        drain.cancel()
        fixed.kill()
        fixed.wait()
    return {"critical_percent": critical, "rows": rows}


def measure_spike(interval_ms: int, rounds: int, rate_mb: int, to_limit: int, limit: int,
                  target_s: float) -> dict[str, Any]:
    """The spike figures, or {"skipped": why} where no memory group can be made."""
    found = writable_parent()
    if isinstance(found, str):
        return {"skipped": found}
    parent, version = found
    path = parent / f"crashguard-bench-spike-{os.getpid()}"
    path.mkdir()
    group = MemoryGroup(path, version)
    group.set_limit(limit)
    try:
        with tempfile.TemporaryDirectory(prefix="crashguard-spike-") as work:
            watched = asyncio.run(_watch(group, interval_ms, rounds, rate_mb, to_limit, limit, Path(work)))
    finally:
        remove(group)
    rows = watched["rows"]
    sidecar = [r["sidecar"] for r in rows]
    fixed = [r["fixed"] for r in rows]
    median = round(statistics.median(sidecar), 3) if sidecar else None
    return {
        "limit_gib": round(limit / GiB, 2), "critical_percent": watched["critical_percent"],
        "to_limit_gib": round(to_limit / GiB, 2), "rate_mib_s": rate_mb, "rounds": len(rows),
        "sidecar_seen_after_s": [round(v, 3) for v in sidecar],
        "fixed_interval_seen_after_s": [round(v, 3) for v in fixed],
        "sidecar_median_s": median, "sidecar_max_s": round(max(sidecar), 3) if sidecar else None,
        "fixed_median_s": round(statistics.median(fixed), 3) if fixed else None,
        "fixed_max_s": round(max(fixed), 3) if fixed else None,
        "target_s": target_s, "ok": median is not None and median <= target_s and len(rows) == rounds,
    }
