"""The sampling schedule (schedule.py) and the rates it and the ladder read (forecast.History): pure functions and a
real Sidecar core whose RAM reading is a fixture /proc/meminfo that the test fills as a spike would."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fake_nvml import FakeGpu, FakeNvml, uuid

from crashguard.monitor import host
from crashguard.monitor.gpu import GPUMonitor
from crashguard.sidecar.core import Sidecar
from crashguard.sidecar.escalation import Escalation, Observation
from crashguard.sidecar.forecast import History, seconds_to_limit
from crashguard.sidecar.schedule import MIN_DELAY, WORST_CASE_FILL, headroom, next_delay
from crashguard.sidecar.settings import Settings

GiB = 2**30


def test_headroom_is_to_critical_below_it_and_to_the_limit_at_or_above_it() -> None:
    total = 24 * GiB
    assert headroom(12 * GiB, total, 90.0) == pytest.approx(0.9 * total - 12 * GiB)
    assert headroom(0.9 * total, total, 90.0) == pytest.approx(0.1 * total)  # at critical: the limit is next
    assert headroom(0.95 * total, total, 90.0) == pytest.approx(0.05 * total)
    assert headroom(total + GiB, total, 90.0) == 0.0  # never negative


def test_the_delay_is_headroom_over_the_worst_case_fill_within_the_minimum_and_the_interval() -> None:
    assert GiB == WORST_CASE_FILL
    assert next_delay(10 * GiB, None, 1.0) == 1.0  # a quiet machine: the configured interval, as before
    assert next_delay(10 * GiB, None, 0.25) == 0.25
    assert next_delay(0.5 * GiB, None, 1.0) == pytest.approx(0.5)  # half a second of headroom at 1 GiB/s
    assert next_delay(0.01 * GiB, None, 1.0) == MIN_DELAY == 0.1  # near the limit: within 100 ms
    assert next_delay(0.0, None, 1.0) == MIN_DELAY
    # A faster rise seen recently replaces the assumed worst case; a slower one does not lower it.
    assert next_delay(0.5 * GiB, 4 * GiB, 1.0) == pytest.approx(0.125)
    assert next_delay(0.5 * GiB, 0.1 * GiB, 1.0) == pytest.approx(0.5)
    assert next_delay(0.5 * GiB, -3 * GiB, 1.0) == pytest.approx(0.5)  # falling use
    assert next_delay(None, None, 2.0) == 2.0  # nothing read yet


def test_history_knows_the_fastest_rise_and_the_rate_right_now() -> None:
    history = History(window=30)
    assert history.fastest_rise() is None and history.recent_rate() is None
    for t in range(20):  # 20 s flat at 10 GiB, one sample a second
        history.add(float(t), 10.0 * GiB)
    for i in range(1, 11):  # then 1 GiB/s, one sample every 0.1 s
        history.add(19 + i / 10, 10.0 * GiB + i / 10 * GiB)
    assert history.recent_rate() == pytest.approx(GiB)
    assert history.fastest_rise() == pytest.approx(GiB)
    trend = history.trend()
    assert trend is not None and trend.bytes_per_second < 0.2 * GiB  # the 30-s line barely moved
    # The ladder's time to the limit takes the faster rate: 13 GiB to go at 1 GiB/s.
    assert seconds_to_limit(history, 24 * GiB) == pytest.approx(13.0)
    # Readings closer than 50 ms make no rate of their own; a lone pair still gives one.
    close = History()
    close.add(0.0, 0.0)
    close.add(0.01, GiB)
    assert close.fastest_rise() is None
    pair = History()
    pair.add(0.0, 0.0)
    pair.add(2.0, GiB)
    assert pair.recent_rate() == pytest.approx(GiB / 2)  # older than a second, but the only pair there is
    # The fastest rise leaves with the window.
    for t in range(31, 62):
        history.add(float(t), 11.0 * GiB)
    assert history.fastest_rise() == pytest.approx(0.0)


def test_no_time_to_the_limit_when_use_is_flat_or_falling() -> None:
    flat, falling = History(), History()
    for t in range(5):
        flat.add(float(t), 5.0 * GiB)
        falling.add(float(t), (5.0 - t / 10) * GiB)
    assert seconds_to_limit(flat, 24 * GiB) is None
    assert seconds_to_limit(falling, 24 * GiB) is None
    assert seconds_to_limit(History(), 24 * GiB) is None
    over = History()
    over.add(0.0, 23 * GiB)
    over.add(1.0, 25 * GiB)
    assert seconds_to_limit(over, 24 * GiB) == 0.0


def _meminfo(path: Path, total: int, available: int) -> None:
    path.write_text(f"MemTotal: {total // 1024} kB\nMemAvailable: {available // 1024} kB\n"
                    "SwapTotal: 0 kB\nSwapFree: 0 kB\n")


def _fake_ram(monkeypatch: pytest.MonkeyPatch, meminfo: Path) -> None:
    real_read_ram = host.read_ram
    monkeypatch.setattr("crashguard.sidecar.sampler.read_ram",
                        lambda cgroup=None: real_read_ram(cgroup=lambda: None, meminfo=meminfo))


def test_the_core_asks_for_the_next_sample_sooner_as_a_spike_nears_the_limit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real Sidecar whose RAM comes from a /proc/meminfo the test writes: 24 GiB, critical at 90 %."""
    meminfo = tmp_path / "meminfo"
    _fake_ram(monkeypatch, meminfo)
    total = 24 * GiB
    core = Sidecar(Settings(runs_directory=str(tmp_path / "runs"), sample_interval_ms=1000), lambda m, x: None)
    try:
        assert core.next_delay() == 1.0  # before the first sample
        delays = []
        for used in (0.5, 0.8, 0.88, 0.895, 0.9, 0.96, 0.999):
            _meminfo(meminfo, total, int(total * (1 - used)))
            core.tick()
            delays.append(core.next_delay())
    finally:
        core.close()
    # 40 and 10 % of 24 GiB to critical: the interval; 2 % (0.48 GiB) at 1 GiB/s: 0.48 s; 0.5 %: 0.12 s; at critical
    # the limit is next (10 %: the interval again; 4 %: 0.96 s), and 0.1 % from it: the minimum. (The ticks came
    # milliseconds apart: too close to make a rise of their own, so the worst case, 1 GiB/s, is the rate.)
    assert delays == pytest.approx([1.0, 1.0, 0.48, 0.12, 1.0, 0.96, MIN_DELAY], rel=1e-3)


def test_the_ladder_gets_a_time_to_the_limit_for_ram_and_none_for_a_gpu(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RAM and a (fake) GPU both rise 1 GiB every 0.1 s past critical: only RAM's wait is bounded by its forecast
    (the kernel's OOM killer waits at its limit; a full GPU raises in the process that asked)."""
    meminfo = tmp_path / "meminfo"
    _fake_ram(monkeypatch, meminfo)
    seen: list[list[Observation]] = []
    real_on_sample = Escalation.on_sample
    monkeypatch.setattr(Escalation, "on_sample", lambda self, observations, settings: (
        seen.append(observations), real_on_sample(self, observations, settings))[1])
    gpu = FakeGpu(uuid(0), total=24 * GiB, used=18 * GiB)
    core = Sidecar(Settings(runs_directory=str(tmp_path / "runs")), lambda m, x: None,
                   gpu=GPUMonitor(nvml=FakeNvml([gpu])))  # type: ignore[arg-type]
    try:
        for used in (18, 19, 20, 21, 22):  # GiB of 24: 75 % -> 92 %, critical (90 / 95 % for VRAM) at the end
            _meminfo(meminfo, 24 * GiB, (24 - used) * GiB)
            gpu.used = used * GiB + GiB  # 79 % -> 96 %
            core.tick()
            time.sleep(0.1)
    finally:
        core.close()
    ram, vram = seen[-1][0], seen[-1][1]
    assert (ram.resource, vram.resource) == ("RAM", "GPU 0")
    assert ram.seconds_to_limit is not None and 0 < ram.seconds_to_limit < 2.0  # 2 GiB to go at up to 10 GiB/s
    assert vram.seconds_to_limit is None
