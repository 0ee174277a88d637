"""The memory report's history: a bounded ring buffer of samples and events, fetched with crashGuard/history.

Unit tests for the buffer (and the core with a tiny cap), then the real sidecar over stdio: it fills at the sample
rate, answers only the asked window, and records a child run's own events (lastEvent changes)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from pygls.exceptions import JsonRpcInvalidParams
from sidecar_session import sidecar
from trainer_helpers import wait_registered

from crashguard.sidecar import protocol as p
from crashguard.sidecar.core import Sidecar
from crashguard.sidecar.history import LEVEL, TRAINING, HistoryEvent, HistoryPoint, SampleHistory, capacity
from crashguard.sidecar.settings import Settings


def _point(t: float) -> HistoryPoint:
    return HistoryPoint(t, 50.0, 1000, ())


def test_capacity_holds_fifteen_minutes_at_the_interval_but_is_capped() -> None:
    assert capacity(1.0) == 900
    assert capacity(0.5) == 1800
    assert capacity(0.2) == 3600  # 4500 would be needed: the cap wins
    assert capacity(60.0) == 15
    assert capacity(1.0, seconds=10, cap=4) == 4


def test_the_ring_buffer_keeps_only_the_newest_points_and_events() -> None:
    history = SampleHistory(1.0, max_points=5, max_events=3)
    assert history.max_points == 5
    for t in range(12):
        history.add_point(_point(float(t)))
        history.add_event(HistoryEvent(float(t), LEVEL, f"e{t}"))
    points, events = history.window(None, now=11.0)
    assert [x.time for x in points] == [7.0, 8.0, 9.0, 10.0, 11.0]
    assert [e.message for e in events] == ["e9", "e10", "e11"]
    points, events = history.window(2.5, now=11.0)  # only the asked window
    assert [x.time for x in points] == [9.0, 10.0, 11.0]
    assert [e.message for e in events] == ["e9", "e10", "e11"]
    # A new interval resizes the buffer and keeps the newest points that still fit.
    history.set_interval(5.0)  # ceil(900 / 5) = 180 > cap 5: unchanged
    assert history.max_points == 5
    small = SampleHistory(1.0, seconds=4.0, max_points=100)
    for t in range(10):
        small.add_point(_point(float(t)))
    small.set_interval(2.0)
    assert small.max_points == 2
    assert [x.time for x in small.window(None, now=9.0)[0]] == [8.0, 9.0]


def test_samples_faster_than_the_interval_keep_one_point_per_interval_the_highest() -> None:
    """Near the limit the schedule samples up to 10x faster than the interval: the buffer keeps its minutes and the
    spike's peak."""
    history = SampleHistory(1.0, max_points=100)
    spike = [(0.0, 50.0), (1.0, 52.0), (1.5, 70.0), (1.6, 85.0), (1.7, 91.0), (1.8, 88.0), (2.0, 87.0), (2.1, 86.0),
             (2.95, 60.0), (3.9, 55.0)]
    for t, percent in spike:
        history.add_point(HistoryPoint(t, percent, 0, ()))
    points, _ = history.window(None, now=4.0)
    # Slots start at 0, 1 (the highest of 1-1.8: 91 % at 1.7), 2 (2-2.1: 87 %), 2.95, 3.9.
    assert [(x.time, x.ram_percent) for x in points] == [(0.0, 50.0), (1.7, 91.0), (2.0, 87.0), (2.95, 60.0),
                                                           (3.9, 55.0)]
    history.set_interval(0.25)  # a shorter interval: shorter slots
    history.add_point(HistoryPoint(4.2, 50.0, 0, ()))
    assert len(history) == 6


def test_the_core_with_a_tiny_cap_stays_bounded(tmp_path: Path) -> None:
    settings = Settings(runs_directory=str(tmp_path / "runs"), sample_interval_ms=200)
    # A history for ticks 10 ms apart (one point per tick), as a fast interval would give.
    core = Sidecar(settings, lambda method, params: None, history=SampleHistory(0.005, max_points=4))
    try:
        samples = []
        for _ in range(7):
            samples.append(core.tick())
            time.sleep(0.01)
        result = p.to_wire(core.history(None))
    finally:
        core.close()
    assert result["maxPoints"] == 4 and result["intervalMs"] == 200
    assert [x["time"] for x in result["points"]] == [round(s.time, 3) for s in samples[-4:]]
    assert [x["ramPercent"] for x in result["points"]] == [s.ram.percent for s in samples[-4:]]
    assert result["thresholds"] == p.to_wire(samples[-1].thresholds)


async def test_history_fills_at_the_sample_rate_and_answers_only_the_asked_window() -> None:
    async with sidecar({"sampleIntervalMs": 250}) as s:
        samples = await s.wait_samples(10)
        everything = await s.request(p.HISTORY, {})
        assert set(everything) == {"points", "events", "thresholds", "gpuNames", "intervalMs", "maxPoints"}
        assert everything["intervalMs"] == 250 and everything["maxPoints"] == 3600
        points = everything["points"]
        by_time = {x["time"]: x for x in points}
        # Every sample the client got is in the history, with the same RAM figure.
        for sample in samples:
            point = by_time[round(sample["time"], 3)]
            assert point["ramPercent"] == sample["ram"]["percent"]
            assert point["ramUsed"] == sample["ram"]["used"]
            assert len(point["gpuPercent"]) == len(sample["gpus"])
        times = [x["time"] for x in points]
        assert times == sorted(times)
        span = times[-1] - times[0]
        assert len(points) >= 10 and abs(span / (len(points) - 1) - 0.25) < 0.1, (len(points), span)
        assert everything["thresholds"] == samples[-1]["thresholds"]

        recent = await s.request(p.HISTORY, {"seconds": 1})
        now = time.time()
        assert recent["points"], "the last second has samples"
        assert all(x["time"] >= now - 2.0 for x in recent["points"])  # 1 s window + the request's round trip
        assert len(recent["points"]) <= 6 < len(points)

        for bad in ({"seconds": 0}, {"seconds": "60"}, {"seconds": True}, {"minutes": 1}):
            with pytest.raises(JsonRpcInvalidParams):
                await s.request(p.HISTORY, bad)


CHILD = """
import sys, time
from crashguard.runs.hook import RunHook
hook = RunHook(sys.argv[2], runs_dir=sys.argv[1], write_interval=0.2)
hook.start()
for step in range(1, 10_000):
    time.sleep(0.1)
    hook.step_boundary(step=step)
    if step == 15:
        hook.event("oom back-off: micro-batch 4 -> 2", micro_batch=2)
"""


async def test_history_records_a_child_runs_own_events_and_level_changes(runs_dir: Path) -> None:
    async with sidecar({"runsDirectory": str(runs_dir), "sampleIntervalMs": 250}) as s:
        await s.wait_samples(2)  # the baseline is taken: the run below is new
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(runs_dir), "backoff"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_registered(runs_dir, "backoff", child.pid)
            await s.wait_for(p.SAMPLE, lambda x: any(r["lastEvent"] for r in x["runs"]), timeout=20)
            # A warning level below current use: a level change lands in the history too.
            await s.request(p.UPDATE_SETTINGS, {"settings": {"ramWarningPercent": 1}})
            await s.wait_for(p.WARNING, lambda w: w["level"] == "warning")
            events = (await s.request(p.HISTORY, {}))["events"]
        finally:
            child.kill()
            child.wait(timeout=10)
    kinds = [(e["kind"], e["level"], e["run"]) for e in events]
    assert ("run", "started", "backoff") in kinds, events
    training = [e for e in events if e["kind"] == TRAINING]
    assert [e["message"] for e in training] == ["backoff: oom back-off: micro-batch 4 -> 2"], events
    level = next(e for e in events if e["kind"] == LEVEL)
    assert level["resource"] == "RAM" and level["level"] == "warning" and "warning at 1%" in level["message"]
    times = [e["time"] for e in events]
    assert times == sorted(times)
