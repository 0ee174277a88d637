"""The real sidecar over stdio: sample rate, RAM figures against psutil, warnings with hysteresis, forecasts."""

from __future__ import annotations

import itertools
import statistics
import subprocess
import sys
import time

import psutil
import pytest
from lsprotocol import types as lsp
from sidecar_session import sidecar

from crashguard.sidecar import protocol as p


@pytest.mark.slow
async def test_samples_arrive_at_the_configured_rate_with_ram_close_to_psutil() -> None:
    async with sidecar({"sampleIntervalMs": 250, "topProcesses": 3}) as s:
        samples = await s.wait_samples(10)
        reference = psutil.virtual_memory()
        arrivals = [t for t, _ in s.received[p.SAMPLE]]
        gaps = [b - a for a, b in itertools.pairwise(arrivals[1:])]  # the first gap includes start-up
        assert 0.2 <= statistics.median(gaps) <= 0.3, gaps
        seqs = [x["seq"] for x in samples]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        last = samples[-1]
        ram = last["ram"]
        if ram["limitSource"] == "physical":
            assert abs(ram["percent"] - reference.percent) <= 2.0, (ram["percent"], reference.percent)
            assert abs(ram["total"] - reference.total) == 0
        assert ram["used"] + ram["available"] == ram["total"]
        assert last["level"] == "normal" and ram["level"] == "normal"
        assert len(last["topProcesses"]) == 3 and all(t["rss"] > 0 for t in last["topProcesses"])
        assert last["gpuReason"] or last["gpus"]  # no GPU here: a reason instead of an exception
        assert last["thresholds"] == {"ramWarningPercent": 80.0, "ramCriticalPercent": 90.0,
                                      "vramWarningPercent": 85.0, "vramCriticalPercent": 95.0,
                                      "pressureSomePercent": 20.0, "pressureFullPercent": 10.0,
                                      "pressureSeconds": 10.0}

        # A request is answered while sampling goes on; it is a fresh sample, not a cached one.
        started = time.monotonic()
        status = await s.request(p.STATUS, {})
        assert time.monotonic() - started < 2.0
        assert status["time"] >= last["time"]
        assert abs(status["ram"]["percent"] - psutil.virtual_memory().percent) <= 2.0 or \
            status["ram"]["limitSource"] != "physical"

        # A new interval applies at once.
        s.client.workspace_did_change_configuration(
            lsp.DidChangeConfigurationParams(settings={"crashGuard": {"sampleIntervalMs": 600}}))
        await s.wait_samples(2)
        slow = await s.wait_samples(3)
        times = [t for t, x in s.received[p.SAMPLE] if x in slow]
        assert 0.5 <= statistics.median([b - a for a, b in itertools.pairwise(times)]) <= 0.7


@pytest.mark.slow
async def test_a_low_threshold_gives_one_warning_and_no_flapping() -> None:
    async with sidecar({"sampleIntervalMs": 200, "ramWarningPercent": 1, "ramCriticalPercent": 100}) as s:
        await s.wait_samples(12)
        warnings = s.of(p.WARNING)
        assert len(warnings) == 1, warnings
        w = warnings[0]
        assert (w["resource"], w["level"], w["previous"], w["thresholdPercent"]) == ("RAM", "warning", "normal", 1)
        assert "RAM at" in w["message"] and w["percent"] >= 1
        assert s.of(p.SAMPLE)[-1]["level"] == "warning"

        # Raising the threshold well above use returns to normal, once.
        result = await s.request(p.UPDATE_SETTINGS, {"settings": {"ramWarningPercent": 99}})
        assert result["settings"]["ramWarningPercent"] == 99
        await s.wait_for(p.WARNING, lambda x: x["level"] == "normal")
        await s.wait_samples(8)
        levels = [x["level"] for x in s.of(p.WARNING)]
        assert levels == ["warning", "normal"]
        assert s.of(p.SAMPLE)[-1]["ram"]["level"] == "normal"


GROWER = """
import sys, time
chunks = []
for _ in range(int(sys.argv[1])):
    chunk = bytearray(20 * 2**20)
    for i in range(0, len(chunk), 4096):
        chunk[i] = 1
    chunks.append(chunk)
    time.sleep(0.1)
time.sleep(60)
"""


async def test_rising_use_gives_a_time_to_threshold_forecast() -> None:
    current = psutil.virtual_memory().percent
    warning = min(99.0, round(current + 2.5, 1))  # ~600 MB above use on this machine
    async with sidecar({"sampleIntervalMs": 250, "ramWarningPercent": warning,
                        "ramCriticalPercent": min(100.0, warning + 0.5)}) as s:
        await s.wait_samples(2)
        grower = subprocess.Popen([sys.executable, "-c", GROWER, "50"])  # +200 MB/s for 5 s, up to 1 GB
        try:
            sample = await s.wait_for(p.SAMPLE, lambda x: any(f["resource"] == "RAM" for f in x["forecasts"]),
                                      timeout=15)
        finally:
            grower.kill()
            grower.wait()
        [forecast] = [f for f in sample["forecasts"] if f["resource"] == "RAM"]
        assert forecast["level"] in ("warning", "critical", "full") and forecast["seconds"] >= 0
        assert forecast["bytesPerSecond"] > 20 * 2**20
        assert forecast["message"].startswith(f"RAM {forecast['level']} in ~")
