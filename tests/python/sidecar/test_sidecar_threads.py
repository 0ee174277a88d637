"""Sampling never waits behind a request, a full request pool answers at once with a clear error, and shutdown/exit
never wait for a request in flight: the bounded pools (unit) and the real sidecar over stdio with 20 slow requests.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import threading
import time
from pathlib import Path

import pytest
from pygls.exceptions import JsonRpcException
from sidecar_session import sidecar
from trainer_helpers import StartTrainer

from crashguard.sidecar import protocol as p
from crashguard.sidecar.server import RUN_REQUEST_QUEUE, RUN_REQUEST_WORKERS
from crashguard.sidecar.workers import PoolBusy, Ticker, WorkerPool


# -- the pools --------------------------------------------------------------------------------------------------
def test_a_full_pool_refuses_at_once_and_close_cancels_what_is_queued() -> None:
    release = threading.Event()
    pool = WorkerPool("test", workers=2, queue_limit=3)
    try:
        running = [pool.submit(release.wait, 30) for _ in range(2)]
        deadline = time.monotonic() + 5
        while not all(f.running() for f in running):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        queued = [pool.submit(lambda: "ran") for _ in range(3)]
        started = time.monotonic()
        with pytest.raises(PoolBusy, match=r"test: 5 already in flight \(limit 5\)"):
            pool.submit(lambda: None)
        assert time.monotonic() - started < 0.5
        assert pool.in_flight == 5
        assert all(t.daemon for t in threading.enumerate() if t.name.startswith("test-"))  # never joined at exit
        pool.close()
        assert all(f.cancelled() for f in queued)
        with pytest.raises(RuntimeError, match="closed"):
            pool.submit(lambda: None)
        release.set()
        assert [f.result(timeout=5) for f in running] == [True, True]  # a job already running ends normally
    finally:
        release.set()
        pool.close()


def test_a_job_that_fails_hands_its_exception_to_the_caller_and_frees_its_slot() -> None:
    pool = WorkerPool("failing", workers=1, queue_limit=0)
    try:
        with pytest.raises(ZeroDivisionError):
            pool.submit(lambda: 1 / 0).result(timeout=5)
        assert pool.submit(lambda: 7).result(timeout=5) == 7
    finally:
        pool.close()


def test_the_ticker_keeps_its_rate_through_a_slow_tick_and_wakes_on_demand() -> None:
    times: list[float] = []

    def tick() -> None:
        times.append(time.monotonic())
        if len(times) == 3:
            time.sleep(0.35)  # a slow tick: the next one comes at once, then the rate resumes (no burst)

    ticker = Ticker(tick, lambda: 0.1)
    ticker.start()
    try:
        deadline = time.monotonic() + 10
        while len(times) < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        before = len(times)
        ticker.wake()
        time.sleep(0.05)
        assert len(times) == before + 1  # woken: ticked without waiting out the interval
    finally:
        ticker.stop()
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps[3:7]) < 0.3, gaps  # after the slow tick, back at the interval


# -- the real sidecar -------------------------------------------------------------------------------------------
SLOW_REQUESTS = RUN_REQUEST_WORKERS + RUN_REQUEST_QUEUE  # 20: every slot of the run-request pool


@pytest.mark.slow
async def test_sampling_keeps_its_rate_with_20_slow_requests_in_flight_and_exit_does_not_wait_for_them(
        runs_dir: Path, start_trainer: StartTrainer) -> None:
    assert SLOW_REQUESTS == 20
    start_trainer("deaf", mb=10, no_poll=True)  # never answers: each cleanup waits out its whole timeout
    interval = 0.25
    async with sidecar({"runsDirectory": str(runs_dir), "sampleIntervalMs": int(interval * 1000)}) as s:
        await s.wait_samples(2)
        slow = [asyncio.ensure_future(s.request(p.CLEANUP, {"timeoutMs": 60_000}, timeout=120))
                for _ in range(SLOW_REQUESTS)]
        try:
            await asyncio.sleep(0.5)
            assert not any(t.done() for t in slow)
            with pytest.raises(JsonRpcException) as refused:  # the 21st: refused at once, with the reason
                await s.request(p.CLEANUP, {"timeoutMs": 60_000}, timeout=5)
            assert refused.value.code == p.SERVER_BUSY
            assert "busy" in str(refused.value.message).lower() and "limit 20" in str(refused.value.message)
            assert refused.value.data == {"inFlight": 20, "limit": 20}

            first = len(s.received[p.SAMPLE])
            latencies = []
            for _ in range(6):  # quick requests have a pool of their own
                started = time.monotonic()
                status = await s.request(p.STATUS, {}, timeout=10)
                latencies.append(time.monotonic() - started)
                assert status["runs"][0]["name"] == "deaf"
                await asyncio.sleep(0.5)
            arrivals = [t for t, _ in s.received[p.SAMPLE][first - 1:]]
            gaps = [b - a for a, b in itertools.pairwise(arrivals)]
            print(f"\n{len(gaps)} samples at {interval} s with {SLOW_REQUESTS} slow requests in flight: median gap "
                  f"{statistics.median(gaps):.3f} s, max gap {max(gaps):.3f} s; status answered in "
                  f"max {max(latencies) * 1000:.0f} ms")
            assert len(gaps) >= 8
            assert statistics.median(gaps) < 1.5 * interval
            assert max(gaps) < 4 * interval  # bound for a loaded 2-core machine; 8 s before this change
            assert max(latencies) < 2.0
            assert not any(t.done() for t in slow)

            shutdown_s, exit_s = await s.close()
            print(f"shutdown answered in {shutdown_s * 1000:.0f} ms, process gone {exit_s * 1000:.0f} ms after exit")
            assert shutdown_s < 1.0 and exit_s < 1.0
        finally:
            for task in slow:
                task.cancel()
