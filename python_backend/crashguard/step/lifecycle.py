"""The one run lifecycle: `GuardedRun`, what every front door stands on (`crashguard train`, `guarded_run`, the MONAI
handler, the Lightning callback).

A run registers (status, control, exit cause, a resume command), each step is one guarded optimizer step
(step/guarded_step.py: micro-batches, OOM back-off that loses no sample, the same step redone), cleanup requests are
answered at step boundaries, a checkpoint-and-stop writes a checkpoint at the next boundary, an urgent one at once
(the step in flight is abandoned), and the run ends in exactly one terminal state with its cause. The public face
for a plain loop or a notebook is `crashguard.run.guarded_run`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from ..guard.cleanup import CleanupReport, emergency_cleanup
from ..runs.hook import RunHook
from ..runs.resume import resume_command
from ..runs.status import RunState, status_path
from ..runs.urgent import UrgentStop
from ..runs.watchdog import start_watchdog
from .backoff import OutOfMemoryAtMinimum
from .checkpoint import latest_intact, restore_rng, save_checkpoint
from .distributed import Coordinator
from .guarded_step import GuardedStep, LossOf, StepResult

log = logging.getLogger(__name__)
StepFn = LossOf


class RunStopped(BaseException):
    """Ends the `with guarded_run(...)` block after a checkpoint-and-stop (the block swallows it). A BaseException,
    so a loop's `except Exception` does not catch it."""


@dataclass(frozen=True)
class Boundary:
    """What a checkpoint function saves with the model: the step boundary it belongs to."""

    step: int  # optimizer steps completed
    rng: dict[str, Any] | None  # RNG states (python, numpy, torch, cuda) at that boundary: restore_rng(rng)
    urgent: bool  # written by the urgent stop, from the watcher thread, while a step was in flight
    run_dir: Path  # runs/<name>: a good place for checkpoints

    def default_path(self) -> Path:
        return self.run_dir / "checkpoints" / f"step-{self.step:08d}.pt"


CheckpointFn = Callable[[Boundary], "str | os.PathLike[str] | None"]


class GuardedRun:
    """A registered training run of the user's own loop (see the module docstring)."""

    def __init__(self, name: str, *, model: torch.nn.Module | None = None,
                 optimizer: torch.optim.Optimizer | None = None, checkpoint: CheckpointFn | None = None,
                 runs_dir: str | os.PathLike[str] = "runs", micro_batch: int | None = None,
                 scaler: torch.amp.GradScaler | None = None, before_update: Callable[[], None] | None = None,
                 resume_args: Sequence[str] = (), keep: int = 3, coord: Coordinator | None = None,
                 cleanup: Callable[[], CleanupReport] = emergency_cleanup, watchdog: bool = True,
                 handle_signals: bool = True, config: str | os.PathLike[str] | None = None,
                 guarded: GuardedStep | None = None, grad_clip_norm: float | None = None) -> None:
        if optimizer is None and guarded is None:
            raise TypeError("guarded_run needs the optimizer (it runs the optimizer step)")
        self.model = model
        self.optimizer = optimizer if optimizer is not None else guarded.optimizer  # type: ignore[union-attr]
        self.coord = coord or Coordinator()
        self._checkpoint_fn = checkpoint
        self.keep = keep
        self.scaler = scaler
        self.hook = RunHook(name, runs_dir=runs_dir, config=config, rank=self.coord.rank,
                            world_size=self.coord.world_size, cleanup=cleanup)
        self.hook.status.resume_command = resume_command(resume_args) if self.coord.is_main else None
        self.guarded = guarded or GuardedStep(self.optimizer, micro_batch=micro_batch, coord=self.coord,
                                              scaler=scaler, before_update=before_update, cleanup=cleanup,
                                              grad_clip_norm=grad_clip_norm)
        self.guarded.on_event = self._step_event
        self.epoch = 0  # set it from the loop to see epochs in the status
        self.should_stop = False  # a checkpoint-and-stop was asked: the checkpoint follows at the next boundary
        self.last_checkpoint: Path | None = None
        self._watchdog = watchdog
        self._handle_signals = handle_signals
        self._previous_handlers: dict[int, Any] = {}
        self._started = False
        self._last: StepResult | None = None
        self._saved_step = -1

    # -- lifecycle ---------------------------------------------------------------------------------
    @property
    def completed_steps(self) -> int:
        return self.guarded.completed

    @completed_steps.setter
    def completed_steps(self, value: int) -> None:
        """Where a resumed run starts (resume() sets it from the checkpoint)."""
        self.guarded.completed = value
        self.hook.update(step=value)

    def start(self) -> GuardedRun:
        if self._started:
            return self
        if self._handle_signals and threading.current_thread() is threading.main_thread():
            wanted = (signal.SIGTERM, signal.SIGINT)
            self._previous_handlers = {s: signal.getsignal(s) for s in wanted}
            self.hook.stop_on_signals(wanted)  # SIGTERM / first Ctrl-C: checkpoint and stop at the next step
        self.hook.start()
        self.hook.watch_urgent(self._urgent_checkpoint)
        if self._watchdog:
            status = self.hook.status
            start_watchdog(status_path(self.hook.run_dir, status.rank), status.pid, status.create_time)
        self._started = True
        return self

    def __enter__(self) -> GuardedRun:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        try:
            return self._end(exc)
        finally:
            for signum, handler in self._previous_handlers.items():
                with contextlib.suppress(ValueError, TypeError):
                    signal.signal(signum, handler)

    def _end(self, exc: BaseException | None) -> bool:
        if exc is None or isinstance(exc, RunStopped):
            if self.should_stop or self.hook.stop_requested:
                self._stop_here()
            else:  # a final checkpoint: Resume of a finished run then has nothing left to redo
                final = self.last_checkpoint if self._saved_now() else self.checkpoint_now()
                self.hook.finish(RunState.FINISHED, checkpoint=final or self.last_checkpoint)
            return True
        if isinstance(exc, UrgentStop):
            return True  # the watcher thread checkpointed, answered and marked the run stopped
        if isinstance(exc, OutOfMemoryAtMinimum):
            path = self.last_checkpoint
            if exc.weights_intact:
                with contextlib.suppress(Exception):
                    path = self.checkpoint_now() or path
            self.hook.finish(RunState.FAILED, checkpoint=path, exit_cause=f"{exc}"[:500])
            return False
        cause = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        self.hook.finish(RunState.FAILED, checkpoint=self.last_checkpoint, exit_cause=cause[:500])
        return False

    def _saved_now(self) -> bool:
        return self._saved_step == self.completed_steps and self.last_checkpoint is not None

    def _stop_here(self) -> None:
        path = self.last_checkpoint if self._saved_now() else self.checkpoint_now()
        self.hook.finish(RunState.STOPPED, checkpoint=path, exit_cause="checkpoint-and-stop")

    # -- the loop ------------------------------------------------------------------------------------
    def step(self, batch: Any, step_fn: StepFn) -> float:
        """One guarded optimizer step over `batch`. `step_fn(micro_batch)` returns the mean loss of a micro-batch
        (forward + loss only: Crash Guard runs backward and the optimizer step). Returns the step's loss."""
        if self.should_stop:  # the loop went on after a stop request: this is the boundary to stop at
            raise RunStopped
        result = self.guarded.run(batch, step_fn)
        self.after_step(result)
        return result.loss

    @property
    def last(self) -> StepResult | None:
        """The last step's loss, samples, micro-batch and accumulation."""
        return self._last

    def after_step(self, result: StepResult) -> None:
        """Status and control at the boundary (the integrations call this after their own step)."""
        self._last = result
        peak_vram = torch.cuda.max_memory_reserved() if torch.cuda.is_available() and torch.cuda.is_initialized() \
            else None
        loss = result.loss if math.isfinite(result.loss) else None  # non-finite numbers are null in files
        self.hook.step_boundary(step=self.completed_steps, epoch=self.epoch, loss=loss,
                                micro_batch=result.micro_batch, accumulation=result.accumulation,
                                peak_vram=peak_vram)
        if self.hook.stop_requested:
            self.should_stop = True

    # -- checkpoints -----------------------------------------------------------------------------------
    def checkpoint_now(self) -> Path | None:
        """Write the checkpoint of the last completed step (under the step's lock)."""
        with self.guarded.lock:
            return self._write_checkpoint(urgent=False)

    def _urgent_checkpoint(self) -> Path | None:
        with self.guarded.lock:  # waits for an update in progress; the step in flight is abandoned
            return self._write_checkpoint(urgent=True)

    def _write_checkpoint(self, urgent: bool) -> Path | None:
        if not self.coord.is_main:
            return None
        boundary = Boundary(self.completed_steps, self.guarded.boundary_rng, urgent, self.hook.run_dir)
        if self._checkpoint_fn is not None:
            written = self._checkpoint_fn(boundary)
            path = Path(written) if written is not None else None
        elif self.model is not None:
            path = save_checkpoint(boundary.default_path().parent, self.state_dict(boundary), boundary.step,
                                   self.keep)
        else:
            return None
        self.last_checkpoint = path
        self._saved_step = boundary.step
        if path is not None:
            self.log_event("checkpoint", f"checkpoint at step {boundary.step}", path=str(path), urgent=urgent)
            self.hook.event(f"checkpoint at step {boundary.step}" + (" (urgent)" if urgent else ""),
                            checkpoint=str(path))
        return path

    def state_dict(self, boundary: Boundary) -> dict[str, Any]:
        """The default checkpoint: model, optimizer, scaler, step and the boundary's RNG states."""
        assert self.model is not None
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "step": boundary.step, "micro_batch": self.guarded.plan.used_micro, "rng": boundary.rng}

    def resume(self) -> int:
        """Load the newest intact default checkpoint of this run, if any (model, optimizer, RNG); the step to
        start from (0 for a fresh run)."""
        if self.model is None:
            raise TypeError("resume() loads the default checkpoint: give guarded_run the model (or resume yourself "
                            "and set run.completed_steps)")
        found = latest_intact(self.hook.run_dir / "checkpoints")
        if found is None:
            return 0
        path, state = found
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if state.get("rng"):
            restore_rng(state["rng"])
            self.guarded.boundary_rng = state["rng"]
        self.guarded.plan.micro = min(self.guarded.plan.micro, int(state.get("micro_batch") or 2**62))
        self.completed_steps = int(state["step"])
        self.last_checkpoint = path
        self.hook.event(f"resumed from {path.name} at step {self.completed_steps}", checkpoint=str(path))
        return self.completed_steps

    # -- events ----------------------------------------------------------------------------------------
    def _step_event(self, kind: str, message: str, fields: dict[str, Any]) -> None:
        if kind == "oom_backoff":
            self.hook.update(micro_batch=self.guarded.plan.used_micro, accumulation=self.guarded.plan.accumulation)
        self.log_event(kind, message, **fields)
        self.hook.event(message)

    def log_event(self, kind: str, message: str, **fields: Any) -> None:
        """Append to runs/<name>/events.jsonl (back-offs, checkpoints, stops): the run's history, kept with it."""
        if not self.coord.is_main:
            return
        record = {"time": round(time.time(), 3), "step": self.completed_steps, "event": kind, "message": message,
                  **fields}
        with contextlib.suppress(OSError), (self.hook.run_dir / "events.jsonl").open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")



__all__ = ["Boundary", "CheckpointFn", "GuardedRun", "RunStopped", "StepFn"]
