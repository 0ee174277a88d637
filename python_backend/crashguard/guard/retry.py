"""`safe_execution`: retry what memory pressure or a transient fault broke, with cleanup in between."""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from ..monitor.host import read_ram
from .cleanup import emergency_cleanup
from .failures import Failure, describe_failure

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

# Given the failure and the call's arguments, return the arguments for the next attempt (e.g. a smaller batch).
Adapter = Callable[[Failure, tuple[Any, ...], dict[str, Any]], tuple[tuple[Any, ...], dict[str, Any]]]


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full-range jitter: delay = min(cap, base * factor**n) * (1 ± jitter)."""

    base: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.25

    def delay(self, retry_index: int) -> float:
        raw = min(self.cap, self.base * self.factor**retry_index)
        return max(0.0, raw * (1.0 + random.uniform(-self.jitter, self.jitter)))


def shrink_kwarg(name: str, factor: float = 0.5, minimum: int = 1) -> Adapter:
    """An adapter that scales an integer keyword argument down after a memory failure (e.g. batch_size)."""

    def adapt(failure: Failure, args: tuple[Any, ...], kwargs: dict[str, Any]
              ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if failure.kind.is_memory and name in kwargs:
            kwargs = {**kwargs, name: max(minimum, int(kwargs[name] * factor))}
        return args, kwargs

    return adapt


def safe_execution(max_retries: int = 2, memory_threshold: float = 0.85, backoff: Backoff | None = None,
                   adapt: Adapter | None = None, sleep: Callable[[float], None] = time.sleep
                   ) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: run the function; on an out-of-memory or transient failure, clean up, wait, and retry.

    Failures that a retry cannot fix (bugs, bad input) are raised at once. Before every attempt, RAM above
    `memory_threshold` (a fraction) triggers a cleanup first. Cleanup after a failure runs only once the
    `except` block is left, because the live traceback pins the failed attempt's tensors.
    """
    policy = backoff or Backoff()

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        name = getattr(fn, "__qualname__", repr(fn))

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            call_args: tuple[Any, ...] = args
            call_kwargs: dict[str, Any] = dict(kwargs)
            for attempt in range(max_retries + 1):
                _cleanup_if_pressed(memory_threshold, name)
                failure: Failure | None = None
                try:
                    return fn(*call_args, **call_kwargs)
                except Exception as exc:
                    failure = describe_failure(exc)
                    if not failure.kind.retryable or attempt == max_retries:
                        if failure.kind.retryable:
                            log.error("%s failed after %d retries: %s", name, max_retries, failure.describe())
                        raise
                # Out of the except block: the traceback (and the tensors it pinned) is gone now.
                if failure.kind.is_memory:
                    emergency_cleanup()
                delay = policy.delay(attempt)
                if adapt is not None:
                    call_args, call_kwargs = adapt(failure, call_args, call_kwargs)
                log.warning("retry %d/%d of %s after %s; waiting %.2f s", attempt + 1, max_retries, name,
                            failure.describe(), delay)
                sleep(delay)
            raise AssertionError("unreachable")  # the loop returns or raises

        return wrapper

    return decorate


def _cleanup_if_pressed(threshold: float, name: str) -> None:
    reading = read_ram()
    if reading.fraction >= threshold:
        log.warning("RAM at %.0f%% (threshold %.0f%%) before %s: cleaning up first",
                    reading.percent, threshold * 100, name)
        emergency_cleanup()
