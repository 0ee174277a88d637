"""The checkpoints of one run (step/lifecycle.py): what every front door's checkpoint goes through.

A checkpoint is of a step boundary: taken under the guarded step's lock, so the parameters, optimizer and step
counter are the last completed step's even when the urgent watcher thread asks in the middle of a step. Rank 0
writes it, through the front door's own writer (`crashguard train`'s state, the MONAI handler's `save_dict`,
Lightning's `save_checkpoint`, or `guarded_run`'s default). When every rank checkpoints at the same boundary, the
ranks then compare their weights' digests (they must be equal while the all-reduce works) and all learn the path.
It keeps which step was saved last, so a stop or the end right after a checkpoint does not write it twice.

Periodic checkpoints are asked for here (`due`); this is where checkpoints by wall time and written in the
background belong too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..runs.hook import RunHook
from .distributed import Coordinator, weights_digest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Boundary:
    """What a checkpoint function saves with the model: the step boundary it belongs to."""

    step: int  # optimizer steps completed
    rng: dict[str, Any] | None  # RNG states (python, numpy, torch, cuda) at that boundary: restore_rng(rng)
    urgent: bool  # written by the urgent stop, from the watcher thread, while a step was in flight
    run_dir: Path  # runs/<name>: a good place for checkpoints

    def default_path(self) -> Path:
        return self.run_dir / "checkpoints" / f"step-{self.step:08d}.pt"


BoundaryWriter = Callable[[Boundary], "Path | None"]


class RunCheckpoints:
    def __init__(self, hook: RunHook, coord: Coordinator, lock: threading.Lock, write: BoundaryWriter, *,
                 model: torch.nn.Module | None = None, every_steps: int | None = None) -> None:
        if every_steps is not None and every_steps < 1:
            raise ValueError(f"checkpoint_every_steps must be at least 1, got {every_steps}")
        self.hook = hook
        self.coord = coord
        self.lock = lock  # the guarded step's
        self.write = write
        self.model = model  # its weights' digest is compared across ranks
        self.every_steps = every_steps
        self.last: Path | None = None
        self._saved_step = -1

    def saved_at(self, step: int) -> bool:
        """The newest checkpoint holds this step's state (nothing to write again)."""
        return self.last is not None and self._saved_step == step

    def changed(self) -> None:
        """What a checkpoint holds changed without a step (a validation's best model and count): the next
        checkpoint of this step is written again."""
        self._saved_step = -1

    def resumed(self, path: Path, step: int) -> None:
        self.last, self._saved_step = path, step

    def due(self, step: int) -> bool:
        """A periodic checkpoint is due at this boundary."""
        every = self.every_steps
        return every is not None and step > 0 and step % every == 0 and not self.saved_at(step)

    def save(self, boundary: Callable[[bool], Boundary], urgent: bool = False, every_rank: bool = False
             ) -> Path | None:
        """Write the checkpoint of the last completed step. `urgent`: from the watcher thread (an unchanged
        state is not written twice). `every_rank`: every rank calls this at this boundary, so the ranks compare
        their weights and learn rank 0's path (never from one rank alone: the others would not answer)."""
        with self.lock:  # waits for an update in progress; a step in flight is abandoned by an urgent stop
            at = boundary(urgent)
            if urgent and self.saved_at(at.step):
                return self.last
            path = self.write(at) if self.coord.is_main else None
        fields: dict[str, Any] = {}
        if every_rank and self.coord.distributed:
            path, fields = self._compare_ranks(path, at.step)
        if path is None:
            return None
        self.last, self._saved_step = path, at.step
        note = " (urgent)" if urgent else ""
        self.hook.log("checkpoint", f"checkpoint at step {at.step}{note}", step=at.step, path=str(path),
                      urgent=urgent, **fields)
        self.hook.event(f"checkpoint at step {at.step}{note}", checkpoint=str(path))
        return path

    def _compare_ranks(self, path: Path | None, step: int) -> tuple[Path | None, dict[str, Any]]:
        digest = weights_digest(self.model) if self.model is not None else None
        reports = self.coord.gather((digest, str(path) if path is not None else None))  # also waits for the write
        written = reports[0][1]
        if self.model is None:
            return (Path(written) if written else None), {}
        digests = [d for d, _ in reports]
        if len(set(digests)) > 1:  # cannot happen while the all-reduce works; say so loudly if it does
            log.error("ranks hold different weights at step %d: %s", step, digests)
            self.hook.log("ranks_diverged", f"ranks hold different weights at step {step}", step=step,
                          weights_sha256=digests)
        return (Path(written) if written else None), {"weights_sha256": digests}
