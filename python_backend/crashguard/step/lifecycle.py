"""The one run lifecycle: `GuardedRun`, what every front door stands on (`crashguard train`, `guarded_run`, the MONAI
handler, the Lightning callback).

A run registers (status, control, exit cause, a resume command, the urgent watcher, signals, a watchdog where no
supervisor records a crash), each step is one guarded optimizer step (step/guarded_step.py: micro-batches, OOM
back-off that loses no sample, the same step redone), and at each boundary the run updates its status, answers
cleanup requests, reacts to memory (step/memory_watch.py) and, with the other ranks, agrees on stopping and on a
pre-emptive back-off and a periodic checkpoint. Periodic checkpoints fall due every N steps and every M minutes
(10 by default), are snapshotted at the boundary and written in the background; a checkpoint-and-stop writes one
at the next boundary, an urgent one at once (the step in flight is abandoned); all go through
step/run_checkpoints.py, with the data position (`data=`) and the RNG states, so a resume continues exactly. The
run ends in exactly one terminal state with its cause and an exit code (`end`, an `Outcome`), and its history is
one event log, events.jsonl (runs/event_log.py). What the user must know happened is also one line on stderr
(step/notices.py). While it runs, the process volunteers to the kernel's OOM killer (`oom_score_adj`, 500 by
default; 0 or None: not at all) and its previous score is restored when the run ends. The public face for a plain
loop or a notebook is `crashguard.run.guarded_run`.

Exit codes (`Outcome.exit_code`, what `crashguard train` exits with): 0 finished or stopped, 3 out of memory at
the smallest batch or stopped at the memory cgroup's high mark, 4 another rank of a torchrun world was lost, 1 any
other failure.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from ..guard.cleanup import CleanupReport, emergency_cleanup
from ..guard.high_mark import HighMarkWatch
from ..guard.oom_score import (
    DEFAULT_OOM_SCORE_ADJ,
    check_oom_score_adj,
    read_oom_score_adj,
    restore_oom_score_adj,
    volunteer,
)
from ..monitor.thresholds import Thresholds
from ..runs.files import read_json
from ..runs.hook import RunHook
from ..runs.resume import resume_command
from ..runs.status import InvalidStatus, RunState, RunStatus, parse_status, status_path
from ..runs.urgent import UrgentStop
from ..runs.watchdog import start_watchdog
from .backoff import EXIT_OOM, OutOfMemoryAtMinimum
from .checkpoint import latest_intact, prune_stale, restore_rng
from .distributed import Coordinator, PeerLost
from .guarded_step import GuardedStep, LossOf, StepResult
from .memory_watch import MemoryVerdict, MemoryWatch, RamThresholds
from .notices import announced, say, warn
from .run_checkpoints import DEFAULT_EVERY_MINUTES, Boundary, Capture, CaptureFn, RunCheckpoints

log = logging.getLogger(__name__)
StepFn = LossOf
EXIT_FAILED = 1
EXIT_PEER_LOST = 4
MAX_CAUSE = 500  # characters of an exit cause in the status


class RunStopped(BaseException):
    """Ends the `with guarded_run(...)` block after a checkpoint-and-stop (the block swallows it). A BaseException,
    so a loop's `except Exception` does not catch it."""


@dataclass(frozen=True)
class Outcome:
    """How a run ended: its terminal state, the exit code for it, what happened, and the newest checkpoint."""

    state: str  # a RunState value
    exit_code: int
    message: str
    checkpoint: Path | None


CheckpointFn = Callable[[Boundary], "str | os.PathLike[str] | None"]


def ends_quietly(exc: BaseException | None) -> bool:
    """Whether a run that ended with `exc` ended as asked (a stop), so the exception is not the caller's to see."""
    return exc is None or isinstance(exc, (RunStopped, UrgentStop))


class GuardedRun:
    """A registered training run (see the module docstring).

    `hook`: a RunHook built by the caller (`crashguard train` records its own resume command; an evaluation holds
    the lock only); by default one is made from `name`, `runs_dir` and `config`. `ram_thresholds`: react to the
    machine's RAM between steps (`crashguard train`'s memory settings); `watch_high_mark`: react to the run's
    memory cgroup's high mark, when it has one.

    Checkpoints: `checkpoint_every_steps` (every N steps) and `checkpoint_every_minutes` (every M minutes of wall
    time, 10 by default; None: not by time), whichever falls due first, written in the background
    (`background_checkpoints=False`: at the boundary). With `model`, the default checkpoint holds the model,
    optimizer, scaler, RNG states and `data`'s position; `checkpoint(boundary) -> path` writes your own instead
    (synchronously). `data`: anything with `state_dict()`/`load_state_dict()` that knows the data position (a
    torchdata `StatefulDataLoader`, a `ResumableSampler`): its state at each boundary goes into the checkpoint and
    `resume()` puts it back, so a resumed run sees exactly the samples an uninterrupted one would.
    `oom_score_adj`: what the process volunteers to the kernel's OOM killer with while the run lasts (500: it goes
    before the editor; 0 or None: not at all); the previous score is restored when the run ends.
    `capture`: a front door's own checkpoint content (the integrations').
    """

    def __init__(self, name: str, *, model: torch.nn.Module | None = None,
                 optimizer: torch.optim.Optimizer | None = None, checkpoint: CheckpointFn | None = None,
                 runs_dir: str | os.PathLike[str] = "runs", micro_batch: int | None = None,
                 scaler: torch.amp.GradScaler | None = None, before_update: Callable[[], None] | None = None,
                 resume_args: Sequence[str] = (), keep: int = 3, coord: Coordinator | None = None,
                 cleanup: Callable[[], CleanupReport] = emergency_cleanup, watchdog: bool = True,
                 handle_signals: bool = True, config: str | os.PathLike[str] | None = None,
                 guarded: GuardedStep | None = None, grad_clip_norm: float | None = None,
                 hook: RunHook | None = None, ram_thresholds: RamThresholds | None = None,
                 watch_high_mark: bool = True, checkpoint_every_steps: int | None = None,
                 checkpoint_every_minutes: float | None = DEFAULT_EVERY_MINUTES, data: Any = None,
                 background_checkpoints: bool = True, oom_score_adj: int | None = DEFAULT_OOM_SCORE_ADJ,
                 capture: CaptureFn | None = None) -> None:
        if optimizer is None and guarded is None:
            raise TypeError("guarded_run needs the optimizer (it runs the optimizer step)")
        if data is not None and not (callable(getattr(data, "state_dict", None))
                                     and callable(getattr(data, "load_state_dict", None))):
            raise TypeError(f"guarded_run(data=...) needs state_dict() and load_state_dict() (a torchdata "
                            f"StatefulDataLoader, a ResumableSampler), got {type(data).__name__}")
        self.model = model
        self.optimizer = optimizer if optimizer is not None else guarded.optimizer  # type: ignore[union-attr]
        self.coord = coord or Coordinator()
        self.keep = keep
        self.scaler = scaler
        self.data = data
        self._data_state: Any = None  # `data`'s position at the last boundary
        self._oom_score_adj = None if not oom_score_adj else check_oom_score_adj(oom_score_adj)
        self._oom_score_before: int | None = None
        cleanup_said = announced(cleanup)
        if hook is None:
            hook = RunHook(name, runs_dir=runs_dir, config=config, rank=self.coord.rank,
                           world_size=self.coord.world_size, cleanup=cleanup_said, oom_score_adj=None)
            hook.status.resume_command = resume_command(resume_args) if self.coord.is_main else None
        self.hook = hook
        self.guarded = guarded or GuardedStep(self.optimizer, micro_batch=micro_batch, coord=self.coord,
                                              scaler=scaler, before_update=before_update, cleanup=cleanup,
                                              grad_clip_norm=grad_clip_norm)
        self.guarded.on_event = self._step_event
        if capture is None and checkpoint is None and model is not None:
            capture = self._default_capture
        ram_limit = ram_thresholds.backoff_fraction if ram_thresholds is not None else Thresholds().critical
        self.checkpoints = RunCheckpoints(self.hook, self.coord, self.guarded.lock, capture=capture,
                                          write=self._user_writer(checkpoint), model=model,
                                          every_steps=checkpoint_every_steps,
                                          every_minutes=checkpoint_every_minutes, ram_limit=ram_limit,
                                          background=background_checkpoints)
        self.memory = MemoryWatch(ram_thresholds, None, cleanup_said, self.event, self.hook.update)
        self._previous: RunStatus | None = None  # the status an earlier process of this run left (for a resume)
        self.epoch = 0  # set it from the loop to see epochs in the status
        self.should_stop = False  # a checkpoint-and-stop was agreed on: the checkpoint follows at this boundary
        self._stop_cause: str | None = None  # why the run stops itself (None: it was asked to)
        self._stop_exit = 0
        self._watchdog = watchdog
        self._watch_high_mark = watch_high_mark
        self._handle_signals = handle_signals
        self._previous_handlers: dict[int, Any] = {}
        self._started = False
        self._last: StepResult | None = None
        self.outcome: Outcome | None = None  # how the run ended, once it has

    # -- lifecycle ---------------------------------------------------------------------------------
    @property
    def completed_steps(self) -> int:
        return self.guarded.completed

    @completed_steps.setter
    def completed_steps(self, value: int) -> None:
        """Where a resumed run starts (resume() sets it from the checkpoint)."""
        self.guarded.completed = value
        self.hook.update(step=value)

    @property
    def started(self) -> bool:
        return self._started

    @property
    def last_checkpoint(self) -> Path | None:
        return self.checkpoints.last

    def start(self) -> GuardedRun:
        """Register the run: signals (SIGTERM, the first Ctrl-C and, under torchrun, SIGHUP: checkpoint and stop at
        the next boundary), the status and lock, the urgent watcher, the memory cgroup's high mark, a watchdog."""
        if self._started:
            return self
        if not self.checkpoints.enabled:
            warn(f"run {self.hook.status.name}: nothing to checkpoint (give guarded_run the model=, or a "
                 "checkpoint= function): a crash, a stop or the end will leave no checkpoint to resume from")
        self._previous = _previous_status(self.hook) if self.coord.is_main else None
        if self._oom_score_adj is not None:
            self._oom_score_before = read_oom_score_adj()
            volunteer(self._oom_score_adj)  # before the loop starts DataLoader workers: they inherit it
        if self._handle_signals and threading.current_thread() is threading.main_thread():
            # A closed terminal or SSH session hangs up torchrun and its ranks alike.
            wanted = (signal.SIGTERM, signal.SIGINT) + ((signal.SIGHUP,) if self.coord.distributed else ())
            self._previous_handlers = {s: signal.getsignal(s) for s in wanted}
            self.hook.stop_on_signals(wanted)
        try:
            self.hook.start()
        except BaseException:  # not registered (another process holds the run, a refused folder): no run to end
            self._give_back_oom_score()
            raise
        prune_stale(self.hook.run_dir / "checkpoints")  # temp files of writes killed with an earlier process
        self.hook.watch_urgent(self._urgent_checkpoint)
        if self._watch_high_mark:
            self.memory.high_mark = HighMarkWatch.for_this_process()
            if self.memory.high_mark is not None:
                log.info("memory group %s: the run reacts to its high mark", self.memory.high_mark.group.path)
        if self._watchdog:
            status = self.hook.status
            start_watchdog(status_path(self.hook.run_dir, status.rank), status.pid, status.create_time)
        self._started = True
        return self

    def __enter__(self) -> GuardedRun:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        self.end(exc)
        return ends_quietly(exc)

    def request_stop(self, cause: str | None = None, exit_code: int = 0) -> None:
        """Checkpoint and stop at this boundary. `cause`: why the run stops itself (None: it was asked to)."""
        self.should_stop = True
        if cause is not None and self._stop_cause is None:
            self._stop_cause, self._stop_exit = cause, exit_code

    # -- the end ---------------------------------------------------------------------------------------
    def end(self, exc: BaseException | None = None, message: str | None = None) -> Outcome:
        """End the run in its one terminal state: `exc` is what ended the loop (None: it ran out of steps, or left
        at a stop). `message`: how a finished run ended (default "finished at step N")."""
        try:
            self.checkpoints.flush()  # a background write in flight lands first: it may be the newest checkpoint
            outcome = self._ending(exc, message)
        except PeerLost as lost:  # a checkpoint every rank takes found a rank gone
            outcome = self._peer_lost(lost)
        except BaseException as failure:
            self._finish(RunState.FAILED, EXIT_FAILED, f"ending the run failed: {type(failure).__name__}: "
                         f"{failure}", self.last_checkpoint)
            raise
        finally:
            self.checkpoints.close()
            for signum, handler in self._previous_handlers.items():
                with contextlib.suppress(ValueError, TypeError):
                    signal.signal(signum, handler)
            self._previous_handlers = {}
            self._give_back_oom_score()
        self.outcome = outcome
        return outcome

    def _give_back_oom_score(self) -> None:
        """The score the process had before the run (a notebook kernel is not left the preferred victim)."""
        if self._oom_score_adj is not None and self._oom_score_before is not None:
            restore_oom_score_adj(self._oom_score_before)
            self._oom_score_before = None

    def _ending(self, exc: BaseException | None, message: str | None) -> Outcome:
        step = self.completed_steps
        if exc is None or isinstance(exc, RunStopped):
            if self.should_stop or (not self.coord.distributed and self.hook.stop_requested):
                return self._stop_here()
            # A final checkpoint: Resume of a finished run then has nothing left to redo.
            return self._finish(RunState.FINISHED, 0, message or f"finished at step {step}", self._save())
        if isinstance(exc, UrgentStop):  # the watcher thread checkpointed, answered and marked the run stopped
            return Outcome(RunState.STOPPED.value, 0, f"stopped urgently at step {step}", self.last_checkpoint)
        if isinstance(exc, PeerLost):
            return self._peer_lost(exc)
        if isinstance(exc, OutOfMemoryAtMinimum):
            return self._out_of_memory(exc)
        cause = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        return self._finish(RunState.FAILED, EXIT_FAILED, cause, self.last_checkpoint)

    def _stop_here(self) -> Outcome:
        path, step = self._save(), self.completed_steps
        if self.coord.is_main:
            say(f"stopped at step {step}" + (f", checkpoint written: {path}" if path else ", no checkpoint")
                + (f" ({self._stop_cause})" if self._stop_cause else ""))
        if self._stop_cause is not None:
            message = f"stopped at step {step}: {self._stop_cause}"
            return self._finish(RunState.STOPPED, self._stop_exit, message, path, exit_cause=message)
        return self._finish(RunState.STOPPED, 0, f"stopped on request at step {step}", path,
                            exit_cause="checkpoint-and-stop")

    def _out_of_memory(self, exc: OutOfMemoryAtMinimum) -> Outcome:
        """The failed step never changed the weights (or its update was undone): the model is the last completed
        step's, safe to keep. Only an update torn half-way leaves nothing to save but the last checkpoint."""
        saved: Path | None = None
        if exc.weights_intact:
            try:
                saved = self._save()
            except PeerLost:
                raise
            except Exception as error:  # the earlier checkpoint still stands
                log.error("could not checkpoint after running out of memory: %s", error)
        path = saved or self.last_checkpoint
        message = (f"{exc}; stopped with a checkpoint at step {self.completed_steps} ({path})" if saved
                   else f"{exc}; stopped, the last good checkpoint is {path}")
        if self.coord.is_main:
            say(message)
        return self._finish(RunState.FAILED, EXIT_OOM, message, path, kind="oom_stop")

    def _peer_lost(self, exc: PeerLost) -> Outcome:
        """Another rank is gone. The model is the last completed step's on every rank (an optimizer step follows
        only a completed gradient all-reduce), so rank 0 checkpoints it alone; the others end without one."""
        coord, step = self.coord, self.completed_steps
        path = self.last_checkpoint
        if coord.is_main and not self.checkpoints.saved_at(step):
            try:
                path = self.checkpoint_now() or path
            except Exception as error:  # the earlier checkpoint still stands
                log.error("could not checkpoint after losing a peer: %s", error)
        message = (f"rank {coord.rank} of {coord.world_size}: another rank is gone ({exc}); stopped at step {step}"
                   + (f", last checkpoint {path}" if path else ", no checkpoint yet"))
        return self._finish(RunState.FAILED, EXIT_PEER_LOST, message, path, kind="peer_lost")

    def _finish(self, state: RunState, exit_code: int, message: str, path: Path | None,
                exit_cause: str | None = None, kind: str | None = None) -> Outcome:
        """The ending's event, then the terminal status (which frees the run's name for the next process)."""
        fields = {"checkpoint": str(path)} if path is not None else {}
        self.hook.log(kind or state.value, message, step=self.completed_steps, **fields)
        if state is RunState.FAILED:
            exit_cause = message[:MAX_CAUSE]
        self.hook.finish(state, checkpoint=path, exit_cause=exit_cause)
        return Outcome(state.value, exit_code, message, path)

    def _save(self) -> Path | None:
        """The checkpoint of this boundary, written by every rank's agreement unless it already is."""
        if self.checkpoints.saved_at(self.completed_steps):
            return self.last_checkpoint
        return self.checkpoint_now(every_rank=True) or self.last_checkpoint

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
        """The boundary after a step (the integrations call this after their own step): status, control requests,
        memory, then what every rank agrees on (stop, pre-emptive back-off), then a periodic checkpoint."""
        self._last = result
        plan = self.guarded.plan
        verdict = self.memory.check(can_back_off=plan.used_micro > 1) if self.memory.active else MemoryVerdict()
        peak_vram = torch.cuda.max_memory_reserved() if torch.cuda.is_available() and torch.cuda.is_initialized() \
            else None
        loss = result.loss if math.isfinite(result.loss) else None  # non-finite numbers are null in files
        self.hook.step_boundary(step=self.completed_steps, epoch=self.epoch, loss=loss,
                                micro_batch=result.micro_batch, accumulation=result.accumulation,
                                peak_vram=peak_vram)
        self.mark_data_position()  # the position after this step's batch: what a checkpoint of it holds
        vote = self.checkpoints.vote(self.completed_steps)
        # A stop request or memory pressure reaches one rank; every rank acts on it at this same step, and takes
        # rank 0's periodic checkpoint with it.
        stop, halve, due, hold = self.coord.agree(self.hook.stop_requested or verdict.stop is not None,
                                                  verdict.halve is not None, vote.due, vote.hold)
        if halve:
            self._back_off(verdict.halve)
        if stop and not self.should_stop and self.coord.is_main:
            say(f"stopping at step {self.completed_steps}: "
                f"{verdict.stop or 'checkpoint-and-stop requested'}; writing its checkpoint")
        if stop and verdict.stop is not None:
            self.request_stop(verdict.stop, EXIT_OOM)
        elif stop:
            self.request_stop()
        elif due and not hold:
            self.checkpoints.periodic(self._boundary)

    def _back_off(self, reason: str | None) -> None:
        plan = self.guarded.plan
        old = plan.used_micro
        if not plan.halve():
            return
        self.hook.update(micro_batch=plan.used_micro, accumulation=plan.accumulation)
        message = f"{reason or 'memory pressure on another rank'}: micro-batch {old}->{plan.used_micro}"
        self.event("ram_backoff", message)
        if self.coord.is_main:
            say(f"backed off at step {self.completed_steps}: {message}")

    # -- checkpoints -----------------------------------------------------------------------------------
    def checkpoint_now(self, every_rank: bool = False) -> Path | None:
        """Write the checkpoint of the last completed step (under the step's lock; rank 0 writes). `every_rank`:
        all ranks call this at this boundary (they then compare their weights)."""
        return self.checkpoints.save(self._boundary, every_rank=every_rank)

    def _urgent_checkpoint(self) -> Path | None:
        return self.checkpoints.save(self._boundary, urgent=True)

    def _boundary(self, urgent: bool) -> Boundary:
        return Boundary(self.completed_steps, self.guarded.boundary_rng, urgent, self.hook.run_dir,
                        self._data_state)

    @staticmethod
    def _user_writer(checkpoint: CheckpointFn | None) -> Callable[[Boundary], Path | None] | None:
        if checkpoint is None:
            return None

        def write(boundary: Boundary) -> Path | None:
            written = checkpoint(boundary)
            return Path(written) if written is not None else None

        return write

    def _default_capture(self, boundary: Boundary) -> Capture:
        return Capture(boundary.default_path(), self.state_dict(boundary), self.keep)

    def mark_data_position(self) -> None:
        """Record `data`'s position now, at a boundary (after each step; after loading a checkpoint): what every
        checkpoint until the next boundary holds, the urgent one's too (the loop may have drawn the next batch)."""
        if self.data is not None:
            self._data_state = self.data.state_dict()

    def mark_changed(self) -> None:
        """What a checkpoint holds changed without a step (e.g. a validation's best model): write it again."""
        self.checkpoints.changed()

    def state_dict(self, boundary: Boundary) -> dict[str, Any]:
        """The default checkpoint: model, optimizer, scaler, step, epoch, the boundary's RNG states and data
        position."""
        assert self.model is not None
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "step": boundary.step, "epoch": self.epoch, "micro_batch": self.guarded.plan.used_micro,
                "rng": boundary.rng, "data": boundary.data}

    def resume(self) -> int:
        """Load the newest intact default checkpoint of this run, if any (model, optimizer, RNG); the step to
        start from (0 for a fresh run)."""
        if self.model is None:
            raise TypeError("resume() loads the default checkpoint: give guarded_run the model (or resume yourself "
                            "and set run.completed_steps)")
        found = latest_intact(self.hook.run_dir / "checkpoints")
        if found is None:
            self.nothing_to_resume()
            return 0
        path, state = found
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if state.get("rng"):
            restore_rng(state["rng"])
            self.guarded.boundary_rng = state["rng"]
        if self.data is not None and state.get("data") is not None:
            self.data.load_state_dict(state["data"])
        self.epoch = int(state.get("epoch") or 0)
        self.guarded.plan.micro = min(self.guarded.plan.micro, int(state.get("micro_batch") or 2**62))
        self.completed_steps = int(state["step"])
        self.mark_data_position()
        self.resumed(path)
        return self.completed_steps

    def nothing_to_resume(self) -> None:
        """A resume was asked for and found no checkpoint: the run starts at step 0 (and says what that redoes)."""
        if self.coord.is_main:
            say(f"no checkpoint to resume from: starting at step 0{_redone(self._previous, 0)}")

    def resumed(self, path: Path, note: str = "") -> None:
        """The run continues from checkpoint `path` (its state is loaded and completed_steps set): recorded as the
        run's newest checkpoint, and as a `resume` event (`note` adds to its message) that says how much work the
        earlier process did after it (redone now)."""
        step = self.completed_steps
        self.checkpoints.resumed(path, step)
        redone = _redone(self._previous, step)
        self.event("resume", f"resumed from {path.name} at step {step}{redone}{note}", checkpoint=str(path),
                   checkpoint_step=step)
        if self.coord.is_main:
            say(f"resumed from step {step}{redone}")

    # -- events ----------------------------------------------------------------------------------------
    def event(self, kind: str, message: str, notify: bool = True, **fields: Any) -> None:
        """An event in the run's history (events.jsonl) and, with `notify`, the status's last event (what the
        sidecar shows; it reads only the latest, so routine news must not push a memory event out of sight)."""
        self.hook.log(kind, message, step=self.completed_steps, **fields)
        if notify:
            self.hook.event(message)
        else:
            log.info("%s", message)

    def _step_event(self, kind: str, message: str, fields: dict[str, Any]) -> None:
        plan = self.guarded.plan
        self.hook.update(micro_batch=plan.used_micro, accumulation=plan.accumulation)
        self.event(kind, message, **fields)
        if self.coord.is_main:
            say(message)


def _previous_status(hook: RunHook) -> RunStatus | None:
    """The status an earlier process of this run left (read before this one overwrites it; hostile input like
    any file of the runs folder: checked, and only used for what a resume message says)."""
    try:
        found = read_json(status_path(hook.run_dir, hook.status.rank))
        return parse_status(found) if found is not None else None
    except (InvalidStatus, OSError, ValueError):
        return None


def _redone(previous: RunStatus | None, step: int) -> str:
    """", 12 steps (about 3 min) of work redone": what the earlier process did after the checkpoint resumed from."""
    if previous is None or previous.step <= step:
        return ""
    steps = previous.step - step
    seconds: float | None = None
    if previous.checkpoint_step == step and previous.checkpoint_time and previous.updated > previous.checkpoint_time:
        seconds = previous.updated - previous.checkpoint_time
    elif previous.step_seconds is not None:
        seconds = steps * previous.step_seconds
    took = f" (about {_duration(seconds)})" if seconds is not None else ""
    return f", {steps} step{'s' if steps != 1 else ''}{took} of work redone"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    return f"{round(seconds / 60)} min"


__all__ = ["EXIT_FAILED", "EXIT_OOM", "EXIT_PEER_LOST", "Boundary", "CheckpointFn", "GuardedRun", "Outcome",
           "RamThresholds", "RunStopped", "StepFn", "ends_quietly"]
