"""The sidecar's threads: the sampling ticker, which nothing else may occupy, and bounded pools for the work that
waits (requests, the escalation ladder's actions).

Every thread here is a daemon and nothing ever joins one: `shutdown`/`exit` must never wait for a cleanup round
that waits on a run between its steps. (asyncio's default pool and ThreadPoolExecutor are joined at interpreter
exit, which made exit wait for every request in flight.)
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class PoolBusy(RuntimeError):
    """A pool's workers are all busy and its queue is full."""

    def __init__(self, name: str, in_flight: int, limit: int) -> None:
        super().__init__(f"{name}: {in_flight} already in flight (limit {limit}); try again when one has finished")
        self.in_flight = in_flight
        self.limit = limit


_STOP = object()


class WorkerPool:
    """`workers` daemon threads taking jobs in order; at most `workers + queue_limit` jobs accepted at a time, the
    next one is refused at once with PoolBusy (a caller gets a clear error rather than a reply minutes later)."""

    def __init__(self, name: str, workers: int, queue_limit: int) -> None:
        self.name = name
        self.limit = workers + queue_limit
        self._workers = workers
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._closed = False
        for i in range(workers):
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True).start()

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name} is closed")
            if self._in_flight >= self.limit:
                raise PoolBusy(self.name, self._in_flight, self.limit)
            self._in_flight += 1
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put((future, fn, args))
        return future

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            future, fn, args = job
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn(*args))
                    except BaseException as exc:  # handed to the waiter, like concurrent.futures does
                        future.set_exception(exc)
            finally:
                with self._lock:
                    self._in_flight -= 1

    def close(self) -> None:
        """Accept nothing more and cancel what is queued; busy workers end after their job (nobody waits)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            future, _fn, _args = job
            future.cancel()
            with self._lock:
                self._in_flight -= 1
        for _ in range(self._workers):
            self._jobs.put(_STOP)


class Ticker:
    """Calls `tick()` on its own thread, the next one `interval()` seconds after the start of the last (asked after
    every tick: the sampling schedule shortens it near the limit), at a steady rate (a slow tick skips ahead instead
    of causing a burst). `wake()` takes the next tick now (new settings)."""

    def __init__(self, tick: Callable[[], object], interval: Callable[[], float], name: str = "sampling") -> None:
        self._tick = tick
        self._interval = interval
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stopped.is_set()

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stopped.is_set():
            try:
                self._tick()
            except Exception:
                log.exception("sampling failed; trying again at the next tick")
            interval = self._interval()
            next_at += interval
            now = time.monotonic()
            if next_at < now:  # fell behind (a slow tick): skip ahead rather than send a burst
                next_at = now + interval
            if self._wake.wait(timeout=next_at - now):
                self._wake.clear()
                next_at = time.monotonic()
