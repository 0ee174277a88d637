"""The checkpoints of one run (step/lifecycle.py): what every front door's checkpoint goes through.

A checkpoint is of a step boundary: taken under the guarded step's lock, so the parameters, optimizer and step
counter are the last completed step's even when the urgent watcher thread asks in the middle of a step. Rank 0
writes it. A front door says what a checkpoint holds and where it goes (`Capture`: `crashguard train`'s state, the
MONAI handler's `save_dict`, Lightning's own checkpoint dict, `guarded_run`'s default), and the writing is done
here, the same for all: periodic checkpoints are snapshotted at the boundary and written in the background
(step/async_writer.py), a stop's, the end's and the urgent one synchronously. A user's own checkpoint function
(`guarded_run(checkpoint=...)`) is called synchronously at the boundary. When every rank checkpoints at the same
boundary, the ranks then compare their weights' digests (they must be equal while the all-reduce works) and all
learn rank 0's path. It keeps which step was saved last, so a stop or the end right after a checkpoint does not
write it twice.

Periodic checkpoints fall due every `every_steps` steps and every `every_minutes` minutes of wall time (on rank 0's
clock; the ranks agree on it), whichever comes first: a kill -9 or the kernel's OOM killer then costs at most that
much work. A periodic checkpoint is delayed, never skipped, while the previous one is still being written or while
its snapshot would push RAM over the critical line (the urgent checkpoint, written from the live tensors without a
copy, is the one that matters then); it is taken at the first boundary after.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..monitor.host import read_ram
from ..runs.hook import RunHook
from .async_writer import BackgroundWriter, Written
from .checkpoint import prune, snapshot, write_checkpoint
from .distributed import Coordinator, weights_digest

log = logging.getLogger(__name__)
DEFAULT_EVERY_MINUTES = 10.0  # a run that sets nothing loses at most this much work to a kill -9


@dataclass(frozen=True)
class Boundary:
    """What a checkpoint function saves with the model: the step boundary it belongs to."""

    step: int  # optimizer steps completed
    rng: dict[str, Any] | None  # RNG states (python, numpy, torch, cuda) at that boundary: restore_rng(rng)
    urgent: bool  # written by the urgent stop, from the watcher thread, while a step was in flight
    run_dir: Path  # runs/<name>: a good place for checkpoints
    data: Any = None  # the data position at that boundary (the `data=` object's state_dict()), if any
    time: float = field(default_factory=time.time)  # wall time of the boundary (what a crash after it redoes)

    def default_path(self) -> Path:
        return self.run_dir / "checkpoints" / f"step-{self.step:08d}.pt"


@dataclass(frozen=True)
class Capture:
    """What a checkpoint of a boundary holds (`state`, live tensors: taken under the step's lock) and where it goes;
    `keep`: the newest checkpoints kept in that folder."""

    path: Path
    state: dict[str, Any]
    keep: int


BoundaryWriter = Callable[[Boundary], "Path | None"]  # a user's own checkpoint function: writes, returns the path
CaptureFn = Callable[[Boundary], "Capture | None"]


def write_capture(capture: Capture) -> Path:
    """Atomic, fsynced, then the old ones pruned (step/checkpoint.py)."""
    write_checkpoint(capture.path, capture.state)
    prune(capture.path.parent, capture.keep)
    return capture.path


@dataclass(frozen=True)
class PeriodicVote:
    """Rank 0's view of the periodic checkpoint at a boundary, which the ranks then agree on."""

    due: bool = False
    hold: bool = False  # due, but delayed (a write in flight, or RAM)


class RunCheckpoints:
    def __init__(self, hook: RunHook, coord: Coordinator, lock: threading.Lock, *, capture: CaptureFn | None,
                 write: BoundaryWriter | None = None, model: torch.nn.Module | None = None,
                 every_steps: int | None = None, every_minutes: float | None = DEFAULT_EVERY_MINUTES,
                 ram_limit: float = 0.9, background: bool = True) -> None:
        if every_steps is not None and (isinstance(every_steps, bool) or not isinstance(every_steps, int)
                                        or every_steps < 1):
            raise ValueError(f"checkpoint_every_steps must be an integer of at least 1, got {every_steps!r}")
        if every_minutes is not None and (isinstance(every_minutes, bool) or not isinstance(every_minutes,
                                                                                           (int, float))
                                          or not 0 < every_minutes <= 7 * 24 * 60):
            raise ValueError(f"checkpoint_every_minutes must be a number of minutes in (0, 10080], "
                             f"got {every_minutes!r}")
        self.hook = hook
        self.coord = coord
        self.lock = lock  # the guarded step's
        self.capture = capture
        self.write = write  # a user's own function: synchronous
        self.model = model  # its weights' digest is compared across ranks
        self.every_steps = every_steps
        self.every_minutes = every_minutes
        self.ram_limit = ram_limit  # share of RAM a snapshot must not push the machine over
        self.background = background
        self.last: Path | None = None
        self._saved_step = -1
        self._saved_time: float | None = None
        self._since = time.monotonic()  # the time-based interval runs from here (start, resume, last checkpoint)
        self._owed = False  # a periodic checkpoint fell due and was delayed
        self._snapshot_bytes: int | None = None  # the last snapshot's size (the next one's estimate)
        self._record = threading.Lock()  # last/_saved_step: the writer thread sets them too
        self._writer = BackgroundWriter(self._written, self._write_failed)

    @property
    def enabled(self) -> bool:
        """Something to checkpoint (a model, a front door's state, or the user's own function)."""
        return self.capture is not None or self.write is not None

    def saved_at(self, step: int) -> bool:
        """The newest checkpoint holds this step's state (nothing to write again)."""
        with self._record:
            return self.last is not None and self._saved_step == step

    def changed(self) -> None:
        """What a checkpoint holds changed without a step (a validation's best model and count): the next
        checkpoint of this step is written again."""
        with self._record:
            self._saved_step = -1

    def resumed(self, path: Path, step: int) -> None:
        with self._record:
            self.last, self._saved_step = path, step
        self._since = time.monotonic()

    @property
    def saved_step(self) -> int | None:
        with self._record:
            return self._saved_step if self.last is not None and self._saved_step >= 0 else None

    # -- periodic checkpoints -------------------------------------------------------------------------------
    def vote(self, step: int) -> PeriodicVote:
        """Whether a periodic checkpoint is due at this boundary, and whether it must wait (rank 0 decides: its
        clock, its writer, its RAM; the other ranks vote nothing and follow the agreement)."""
        if not self.coord.is_main or not self.enabled or step <= 0 or self.saved_at(step):
            return PeriodicVote()
        by_steps = self.every_steps is not None and step % self.every_steps == 0
        by_time = self.every_minutes is not None and time.monotonic() - self._since >= self.every_minutes * 60
        if not (by_steps or by_time or self._owed):
            return PeriodicVote()
        reason = self._hold_reason() if self.background and self.write is None else None
        if reason is not None:
            if not self._owed:
                self.hook.log("checkpoint_delayed", f"periodic checkpoint at step {step} delayed: {reason}",
                              step=step)
            self._owed = True
            return PeriodicVote(due=True, hold=True)
        return PeriodicVote(due=True)

    def _hold_reason(self) -> str | None:
        if self._writer.busy:
            return "the previous checkpoint is still being written"
        estimate = self._snapshot_bytes
        if estimate is None:
            return None  # the first snapshot: measured as it is taken
        ram = read_ram()
        if ram.total and (ram.used + estimate) / ram.total >= self.ram_limit:
            return (f"RAM at {ram.percent:.0f}%, and the snapshot would take {estimate / 2**20:.0f} MiB more "
                    f"(critical at {self.ram_limit:.0%})")
        return None

    def periodic(self, boundary: Callable[[bool], Boundary]) -> Path | None:
        """Take the periodic checkpoint every rank agreed on (every rank calls this at this boundary)."""
        return self.save(boundary, every_rank=True, background=self.background)

    # -- writing ----------------------------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> bool:
        """Wait for the background write in flight, if any (it is then the newest checkpoint)."""
        return self._writer.wait(timeout)

    def close(self) -> None:
        self._writer.close()

    def save(self, boundary: Callable[[bool], Boundary], urgent: bool = False, every_rank: bool = False,
             background: bool = False) -> Path | None:
        """Write the checkpoint of the last completed step. `urgent`: from the watcher thread, synchronously from
        the live tensors (no copy: RAM is short), never waiting for a background write (an unchanged state is not
        written twice). `every_rank`: every rank calls this at this boundary, so the ranks compare their weights
        and learn rank 0's path (never from one rank alone: the others would not answer). `background`: snapshot
        now, write in the background (a periodic checkpoint); else any write in flight is waited for first."""
        background = background and self.write is None
        if not urgent and not background:
            self._writer.wait()  # a stop's or the end's checkpoint lands after the one in flight
        taken: Written | None = None
        with self.lock:  # waits for an update in progress; a step in flight is abandoned by an urgent stop
            at = boundary(urgent)
            if urgent and self.saved_at(at.step):
                return self.last
            if self.coord.is_main:
                taken = self._take(at, background)
        path = taken.path if taken is not None else None
        fields: dict[str, Any] = {}
        if every_rank and self.coord.distributed:
            path, fields = self._compare_ranks(path, at, background)
        self._owed = False
        self._since = time.monotonic()
        if background or path is None:
            return path  # a background write is recorded when it ends
        self._record_written(Written(path, at.step, at.time), urgent, fields)
        return path

    def _take(self, at: Boundary, background: bool) -> Written | None:
        """Under the lock, on rank 0: write now, or snapshot and hand the copy to the writer thread."""
        if self.write is not None:
            written = self.write(at)
            return Written(Path(written), at.step, at.time) if written is not None else None
        if self.capture is None:
            return None
        capture = self.capture(at)
        if capture is None:
            return None
        if not background:
            return Written(write_capture(capture), at.step, at.time)
        copied, nbytes = snapshot(capture.state)
        self._snapshot_bytes = nbytes
        frozen = Capture(capture.path, copied, capture.keep)
        self._writer.submit(lambda: write_capture(frozen), at.step, at.time, nbytes)
        self.hook.update(snapshot_bytes=nbytes)
        return Written(capture.path, at.step, at.time)

    def _written(self, written: Written) -> None:
        """On the writer thread: a background checkpoint is on disk."""
        self.hook.update(snapshot_bytes=0)
        self._record_written(written, urgent=False, fields={"background": True})

    def _write_failed(self, step: int, error: BaseException) -> None:
        self.hook.update(snapshot_bytes=0)
        message = f"checkpoint at step {step} failed: {type(error).__name__}: {error}"[:500]
        log.error("%s", message)
        self.hook.log("checkpoint_failed", message, step=step)

    def _record_written(self, written: Written, urgent: bool, fields: dict[str, Any]) -> None:
        with self._record:
            if self.last is not None and written.step < self._saved_step:
                return  # an older background write finished after a newer (urgent) checkpoint
            self.last, self._saved_step, self._saved_time = written.path, written.step, written.taken
        note = " (urgent)" if urgent else ""
        self.hook.log("checkpoint", f"checkpoint at step {written.step}{note}", step=written.step,
                      path=str(written.path), urgent=urgent, **fields)
        self.hook.event(f"checkpoint at step {written.step}{note}", checkpoint=str(written.path),
                        checkpoint_step=written.step, checkpoint_time=written.taken)

    def _compare_ranks(self, path: Path | None, at: Boundary, background: bool
                       ) -> tuple[Path | None, dict[str, Any]]:
        """Every rank at this boundary: compare the weights' digests, and learn rank 0's checkpoint (for a
        background one, the newest already on disk: the one in flight is recorded by rank 0 when it lands)."""
        digest = weights_digest(self.model) if self.model is not None else None
        on_disk: tuple[str | None, int, float | None] = (str(path) if path is not None else None, at.step, at.time)
        if background and self.coord.is_main:
            with self._record:
                on_disk = (str(self.last) if self.last else None, self._saved_step, self._saved_time)
        reports = self.coord.gather((digest, on_disk))  # also waits for rank 0's write
        written, step, taken = reports[0][1]
        fields: dict[str, Any] = {}
        if self.model is not None:
            digests = [d for d, _ in reports]
            fields["weights_sha256"] = digests
            if len(set(digests)) > 1:  # cannot happen while the all-reduce works; say so loudly if it does
                log.error("ranks hold different weights at step %d: %s", at.step, digests)
                self.hook.log("ranks_diverged", f"ranks hold different weights at step {at.step}", step=at.step,
                              weights_sha256=digests)
        if not background:
            return (Path(written) if written else None), fields
        if not self.coord.is_main and written is not None and not self.saved_at(step):
            with self._record:
                self.last, self._saved_step, self._saved_time = Path(written), step, taken
            self.hook.update(checkpoint=written, checkpoint_step=step, checkpoint_time=taken)
        return path, fields
