"""safe_execution with real failures: what is retried, how, and that a failed attempt's memory is released."""

from __future__ import annotations

import logging
import weakref

import pytest

from crashguard.guard import Backoff, safe_execution, shrink_kwarg

NO_WAIT = Backoff(base=0.0, jitter=0.0)


class Payload:
    """Something large-ish a failed attempt would pin through its traceback."""

    def __init__(self) -> None:
        self.data = bytearray(8 * 2**20)


def test_transient_failure_is_retried_then_succeeds(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []
    waits: list[float] = []

    @safe_execution(max_retries=2, backoff=Backoff(base=0.1, jitter=0.0), sleep=waits.append)
    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError("device busy")
        return "ok"

    with caplog.at_level(logging.WARNING):
        assert flaky() == "ok"
    assert len(calls) == 3
    assert waits == [0.1, 0.2]  # exponential
    retries = [r for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 2 and "transient" in retries[0].getMessage()


def test_fatal_failure_is_not_retried() -> None:
    calls: list[int] = []

    @safe_execution(max_retries=3, backoff=NO_WAIT)
    def buggy() -> None:
        calls.append(1)
        raise ValueError("bad shape")

    with pytest.raises(ValueError, match="bad shape"):
        buggy()
    assert len(calls) == 1


def test_exhausted_retries_raise_the_last_error(caplog: pytest.LogCaptureFixture) -> None:
    @safe_execution(max_retries=2, backoff=NO_WAIT)
    def always_oom() -> None:
        raise MemoryError("still too big")

    with caplog.at_level(logging.ERROR), pytest.raises(MemoryError, match="still too big"):
        always_oom()
    assert any("failed after 2 retries" in r.getMessage() for r in caplog.records)


def test_failed_attempt_memory_is_released_before_the_retry() -> None:
    refs: list[weakref.ref[Payload]] = []
    alive_at_retry: list[bool] = []

    @safe_execution(max_retries=1, backoff=NO_WAIT)
    def attempt() -> None:
        if refs:
            alive_at_retry.append(refs[0]() is not None)
            return
        payload = Payload()
        refs.append(weakref.ref(payload))
        raise MemoryError("allocation failed")  # the traceback holds `payload` while the except block runs

    attempt()
    assert alive_at_retry == [False]


def test_jitter_stays_in_bounds() -> None:
    policy = Backoff(base=1.0, factor=2.0, cap=5.0, jitter=0.25)
    delays = [policy.delay(n) for n in range(6) for _ in range(50)]
    assert all(0.75 <= d <= 5.0 * 1.25 for d in delays)
    assert len({round(d, 6) for d in delays}) > 10  # really jittered


def test_adapter_shrinks_the_next_attempt() -> None:
    sizes: list[int] = []

    @safe_execution(max_retries=3, backoff=NO_WAIT, adapt=shrink_kwarg("batch"))
    def step(batch: int) -> int:
        sizes.append(batch)
        if batch > 2:
            raise MemoryError(f"batch {batch} does not fit")
        return batch

    assert step(batch=8) == 2
    assert sizes == [8, 4, 2]


def test_pressure_before_an_attempt_triggers_cleanup(caplog: pytest.LogCaptureFixture) -> None:
    @safe_execution(memory_threshold=0.0)  # any use counts as pressure
    def work() -> int:
        return 1

    with caplog.at_level(logging.INFO):
        assert work() == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any("cleaning up first" in m for m in messages)
    assert any("emergency cleanup freed" in m for m in messages)
