"""Checkpoints written in the background: torch.distributed.checkpoint's async-save pattern, for one process.

At the step boundary the state is snapshotted (step/checkpoint.py `snapshot`: copied off the GPU and away from the
live tensors, which the next step changes); one writer thread then writes the copy (atomically, fsynced, the old
ones pruned) while training goes on. Never two writes in flight: a periodic checkpoint that falls due while the
previous write is still running is *delayed* to the first boundary after it ends (training never waits for the
disk, and RAM never holds two snapshots); a checkpoint that must be on disk before the run goes on (a stop, the end)
waits for the write in flight, then is written at once (`wait`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Written:
    """A checkpoint the writer finished: where, of which step, taken when (time.time() at its boundary)."""

    path: Path
    step: int
    taken: float


@dataclass
class _Job:
    write: Callable[[], Path]
    step: int
    taken: float
    nbytes: int


class BackgroundWriter:
    """One writer thread (started with the first job; a daemon, so a process that must end now is never held by
    it: the temp file of an unfinished write is not a checkpoint). `on_written` and `on_failed` run on the writer
    thread after each job."""

    def __init__(self, on_written: Callable[[Written], None], on_failed: Callable[[int, BaseException], None]
                 ) -> None:
        self._on_written = on_written
        self._on_failed = on_failed
        self._cond = threading.Condition()
        self._job: _Job | None = None  # the job waiting for the thread or being written
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def busy(self) -> bool:
        """A write is in flight (a new periodic checkpoint is delayed until it ends)."""
        with self._cond:
            return self._job is not None

    @property
    def pending_bytes(self) -> int:
        """The bytes of the snapshot held in RAM until its write ends (0 when none is)."""
        with self._cond:
            return self._job.nbytes if self._job is not None else 0

    def submit(self, write: Callable[[], Path], step: int, taken: float, nbytes: int) -> None:
        """Write in the background. The caller checked `busy` at this boundary; a job submitted while another is
        in flight waits for it (never two writes at once)."""
        with self._cond:
            while self._job is not None:
                self._cond.wait()
            if self._closed:
                raise RuntimeError("the checkpoint writer is closed")
            self._job = _Job(write, step, taken, nbytes)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="crashguard-checkpoint-writer", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until no write is in flight; False if `timeout` passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: self._job is None, timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Finish the write in flight and end the thread; False if `timeout` passed first."""
        finished = self.wait(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        thread = self._thread
        if finished and thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        return finished

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._job is None and not self._closed:
                    self._cond.wait()
                job = self._job
                if job is None:
                    return
            try:
                path = job.write()
            except BaseException as exc:  # reported; the previous checkpoint still stands
                self._report(self._on_failed, job.step, exc)
            else:
                self._report(self._on_written, Written(path, job.step, job.taken))
            with self._cond:
                self._job = None  # the snapshot is freed with the job
                self._cond.notify_all()

    @staticmethod
    def _report(callback: Callable[..., None], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:  # a status write that failed must not end the writer
            log.exception("reporting a background checkpoint failed")
