"""Crash Guard for MONAI engines and any PyTorch-Ignite `Engine`: a handler in MONAI's style.

    sampler = ResumableSampler(dataset, shuffle=True, seed=0)      # the data position, in every checkpoint
    loader = DataLoader(dataset, batch_size=4, sampler=sampler)
    handler = CrashGuardHandler(name="brats", runs_dir="runs", resume=True)
    trainer = SupervisedTrainer(..., train_data_loader=loader, iteration_update=handler.iteration,
                                train_handlers=[handler, ...])
    trainer.run()

`attach(engine)` registers the run when the engine starts, keeps its status (iteration, epoch, loss, micro-batch,
memory), answers cleanup at iteration boundaries and checkpoint-and-stop there (an urgent one at once), checkpoints
periodically (`checkpoint_every_steps`, `checkpoint_every_minutes`: 10 by default; written in the background)
through `save_dict` (default for a SupervisedTrainer: network, optimizer, the trainer's own state, the AMP scaler;
MONAI's `CheckpointLoader` reads it) or a `CheckpointSaver`'s `save_dict` and `save_dir`, and records why the run
ended. `iteration` is a drop-in `iteration_update` for `SupervisedTrainer`: the same work as MONAI's iteration,
through the guarded step, so an out-of-memory splits the batch and the effective batch is kept. Without it the
handler still guards the run, with no back-off (an urgent stop then waits for the iteration's end), and says so.

Exact resume: Ignite restarts an interrupted epoch's data from its first batch. With a `ResumableSampler` (found
on the trainer's `data_loader`, or given as `sampler=`) the checkpoint holds the place in the epoch, and the
resumed run sees exactly the samples, in the order, of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

from .guard.oom_score import DEFAULT_OOM_SCORE_ADJ
from .step.batches import batch_size
from .step.checkpoint import checkpoint_name, list_checkpoints, restore_rng
from .step.data_position import ResumableSampler
from .step.guarded_step import GuardedStep, StepResult
from .step.lifecycle import Boundary, Capture, GuardedRun, ends_quietly
from .step.notices import warn
from .step.run_checkpoints import DEFAULT_EVERY_MINUTES

log = logging.getLogger(__name__)


class CrashGuardHandler:
    """See the module docstring. `checkpoint`: a MONAI `CheckpointSaver` (its save_dict and save_dir are used) or a
    function `(engine, boundary) -> path` (called at the boundary, synchronously); `save_dict`: the objects to
    checkpoint (default: the SupervisedTrainer's); `resume`: load the newest checkpoint of this run when the engine
    starts (model, optimizer, iteration, RNG, data position); `sampler`: the loader's `ResumableSampler` (default:
    the one on the trainer's `data_loader`, if any). `checkpoint_every_steps`/`checkpoint_every_minutes`: periodic
    checkpoints; `oom_score_adj`: what the process volunteers to the kernel's OOM killer with while it trains (0 or
    None: nothing; restored at the end). Other keywords go to the run (`GuardedRun`)."""

    def __init__(self, name: str, runs_dir: str | os.PathLike[str] = "runs", *, checkpoint: Any = None,
                 save_dict: Mapping[str, Any] | None = None, micro_batch: int | None = None, resume: bool = False,
                 resume_args: Sequence[str] = ("--resume",), keep: int = 3, grad_clip_norm: float | None = None,
                 sampler: ResumableSampler | None = None, checkpoint_every_steps: int | None = None,
                 checkpoint_every_minutes: float | None = DEFAULT_EVERY_MINUTES,
                 oom_score_adj: int | None = DEFAULT_OOM_SCORE_ADJ, **run_options: Any) -> None:
        self.name = name
        self.runs_dir = runs_dir
        self.saver = checkpoint if checkpoint is not None and not callable(checkpoint) else None
        self.checkpoint_fn: Callable[[Engine, Boundary], Any] | None = checkpoint if callable(checkpoint) else None
        self.save_dict = dict(save_dict) if save_dict is not None else None
        self.micro_batch = micro_batch
        self.resume = resume
        self.resume_args = resume_args
        self.keep = keep
        self.grad_clip_norm = grad_clip_norm  # clipped once per step, on the accumulated gradients (iteration)
        self.sampler = sampler
        self.run_options = {"checkpoint_every_steps": checkpoint_every_steps,
                            "checkpoint_every_minutes": checkpoint_every_minutes, "oom_score_adj": oom_score_adj,
                            **run_options}
        self.engine: Engine | None = None
        self.run: GuardedRun | None = None
        self._guarded_iterations = False  # the engine runs `iteration` (set when it starts)
        self._holding_lock = False

    # -- attach --------------------------------------------------------------------------------------
    def attach(self, engine: Engine) -> None:
        """Register the handler's events (MONAI attaches train_handlers before the trainer has its optimizer: the
        run itself is set up when the engine starts)."""
        self.engine = engine
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_STARTED, self._iteration_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.COMPLETED, self._completed)
        engine.add_event_handler(Events.EXCEPTION_RAISED, self._exception_raised)

    def _set_up(self, engine: Engine) -> GuardedRun:
        given = self.run_options.pop("optimizer", None)
        optimizer = given if given is not None else getattr(engine, "optimizer", None)
        if optimizer is None:
            raise ValueError("CrashGuardHandler needs the optimizer: use it with a SupervisedTrainer or pass "
                             "optimizer=... for another Engine")
        scaler = getattr(engine, "scaler", None) if getattr(engine, "amp", False) else None
        guarded = GuardedStep(optimizer, micro_batch=self.micro_batch, scaler=scaler,
                              grad_clip_norm=self.grad_clip_norm)
        if self.sampler is None:
            found = getattr(getattr(engine, "data_loader", None), "sampler", None)
            self.sampler = found if isinstance(found, ResumableSampler) else None
        if self.sampler is None:
            warn(f"CrashGuardHandler {self.name}: the data loader has no ResumableSampler, so a resume restarts the "
                 "interrupted epoch's data from its first batch (Ignite's way): give the DataLoader "
                 "sampler=ResumableSampler(dataset) for an exact resume (docs/integrations.md)")
        user_fn = self.checkpoint_fn
        own = (lambda boundary: user_fn(engine, boundary)) if user_fn is not None else None
        self.run = GuardedRun(self.name, optimizer=optimizer, checkpoint=own,
                              capture=self._capture if own is None else None, runs_dir=self.runs_dir,
                              resume_args=self.resume_args, keep=self.keep, guarded=guarded, data=self.sampler,
                              **self.run_options)
        if self.save_dict is None:
            self.save_dict = {key: obj for key, obj in (
                ("network", getattr(engine, "network", None)), ("optimizer", optimizer), ("trainer", engine),
                ("scaler", scaler)) if obj is not None}
        return self.run

    def _require_run(self) -> GuardedRun:
        if self.run is None:
            raise RuntimeError("CrashGuardHandler is not attached: pass it in train_handlers or call attach(engine)")
        return self.run

    # -- events ----------------------------------------------------------------------------------------
    def _started(self, engine: Engine) -> None:
        run = self.run if self.run is not None and not self.run.started else self._set_up(engine)
        self._guarded_iterations = getattr(engine, "_process_function", None) == self.iteration
        if not self._guarded_iterations:
            warn(f"CrashGuardHandler {self.name}: the engine does not run iteration_update=handler.iteration, so an "
                 "out-of-memory is not backed off (it ends the run, with a checkpoint of the last step); pass "
                 "iteration_update=handler.iteration to the SupervisedTrainer for the zero-loss back-off")
        run.start()
        resumed_from = self._load_newest(engine) if self.resume else None
        run.completed_steps = engine.state.iteration
        run.mark_data_position()
        if resumed_from is not None:
            run.resumed(resumed_from)
        elif self.resume:
            run.nothing_to_resume()

    def _epoch_started(self, engine: Engine) -> None:
        epoch = max(0, engine.state.epoch - 1)
        self._require_run().epoch = epoch
        if self.sampler is not None:  # before the engine draws this epoch's first batch
            self.sampler.set_epoch(epoch)

    def _iteration_started(self, engine: Engine) -> None:
        run = self._require_run()
        if not self._guarded_iterations:
            # The engine's own iteration changes the parameters somewhere inside: hold the step's lock for all of
            # it, so an urgent stop waits for the iteration's end instead of saving a half-updated model.
            run.guarded.lock.acquire()
            self._holding_lock = True
            run.completed_steps = engine.state.iteration - 1

    def _iteration_completed(self, engine: Engine) -> None:
        run = self._require_run()
        result = run.last if self._guarded_iterations else None
        if result is None or not self._guarded_iterations:
            run.completed_steps = engine.state.iteration
            self._release()
            samples = _samples(engine.state.batch)
            result = StepResult(_loss_of_output(engine.state.output), samples, samples, 1)  # the engine's step
        if self.sampler is not None:
            self.sampler.advance(result.samples)  # the position after this step: what its checkpoint holds
        run.after_step(result)
        if run.should_stop:
            run.checkpoint_now()
            engine.terminate()

    def _completed(self, engine: Engine) -> None:
        self._require_run().end()

    def _release(self) -> None:
        if self._holding_lock and self.run is not None:
            self._holding_lock = False
            self.run.guarded.lock.release()

    def _exception_raised(self, engine: Engine, exc: BaseException) -> None:
        self._release()
        run = self.run
        if run is None:  # failed before the run registered: nothing to record
            raise exc
        run.end(exc)
        if ends_quietly(exc):
            return  # an urgent stop in an interactive session: already checkpointed and answered
        raise exc

    # -- the guarded iteration -------------------------------------------------------------------------
    def iteration(self, engine: Any, batchdata: Any) -> dict[str, Any]:
        """`iteration_update` for MONAI's SupervisedTrainer: its `_iteration`, split into micro-batches by the
        guarded step (events FORWARD_COMPLETED and LOSS_COMPLETED fire per micro-batch, BACKWARD_COMPLETED and
        MODEL_COMPLETED once per step). `engine.state.output` holds the whole batch's inputs, labels and detached
        predictions, and the step's loss."""
        from monai.engines.utils import IterationEvents
        from monai.utils.enums import CommonKeys as Keys

        run = self._require_run()
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        if getattr(engine, "accumulation_steps", 1) > 1:
            raise ValueError("CrashGuardHandler.iteration accumulates micro-batches itself: leave the "
                             "SupervisedTrainer's accumulation_steps at 1 and give the whole batch")
        parts: dict[str, list[torch.Tensor]] = {}

        def fresh_attempt() -> None:
            parts.clear()
            parts.update({Keys.IMAGE: [], Keys.LABEL: [], Keys.PRED: []})

        def loss_of(micro: Any) -> torch.Tensor:
            batch = engine.prepare_batch(micro, engine.state.device, engine.non_blocking, **engine.to_kwargs)
            inputs, targets, args, kwargs = (*batch, (), {}) if len(batch) == 2 else batch
            engine.network.train()
            autocast = torch.autocast("cuda", **engine.amp_kwargs) if engine.amp and engine.scaler is not None \
                else contextlib.nullcontext()
            with autocast:
                engine.state.output = {Keys.IMAGE: inputs, Keys.LABEL: targets}
                pred = engine.inferer(inputs, engine.network, *args, **kwargs)
                engine.state.output[Keys.PRED] = pred
                engine.fire_event(IterationEvents.FORWARD_COMPLETED)
                loss = engine.loss_function(pred, targets).mean()
                engine.state.output[Keys.LOSS] = loss
                engine.fire_event(IterationEvents.LOSS_COMPLETED)
            parts[Keys.IMAGE].append(inputs.detach())
            parts[Keys.LABEL].append(targets.detach() if isinstance(targets, torch.Tensor) else targets)
            parts[Keys.PRED].append(pred.detach())
            return loss  # type: ignore[no-any-return]

        result = run.guarded.run(batchdata, loss_of, on_attempt=fresh_attempt)
        run._last = result
        output: dict[str, Any] = {k: _cat(v) for k, v in parts.items()}
        output[Keys.LOSS] = torch.tensor(result.loss)
        engine.state.output = output
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        engine.fire_event(IterationEvents.MODEL_COMPLETED)  # MONAI decollates and post-processes here
        return engine.state.output  # type: ignore[no-any-return]

    # -- checkpoints ------------------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        if self.saver is not None and getattr(self.saver, "save_dir", None):
            return Path(self.saver.save_dir)
        return self._require_run().hook.run_dir / "checkpoints"

    def _objects(self) -> dict[str, Any]:
        if self.saver is not None and getattr(self.saver, "save_dict", None):
            return dict(self.saver.save_dict)
        return dict(self.save_dict or {})

    def _capture(self, boundary: Boundary) -> Capture:
        """The checkpoint of a boundary (under the step's lock; the run writes it, in the background for a periodic
        one)."""
        state: dict[str, Any] = {}
        for key, obj in self._objects().items():
            if isinstance(obj, Engine):  # mid-iteration its counter is one ahead of the boundary
                engine_state = dict(obj.state_dict())
                engine_state.pop("epoch", None)
                engine_state["iteration"] = boundary.step
                state[key] = engine_state
            else:
                state[key] = obj.state_dict()
        state["crashguard"] = {"step": boundary.step, "rng": boundary.rng, "data": boundary.data}
        return Capture(self.checkpoint_dir / checkpoint_name(boundary.step), state, self.keep)

    def _load_newest(self, engine: Engine) -> Path | None:
        """Load the newest readable checkpoint of this run into the engine and its objects; its path."""
        from ignite.handlers import Checkpoint

        for path in reversed(list_checkpoints(self.checkpoint_dir)):
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # a damaged file: the one before it
                log.warning("skipping checkpoint %s: %s", path, exc)
                continue
            Checkpoint.load_objects(to_load=self._objects(), checkpoint=state)
            extra = state.get("crashguard") or {}
            if extra.get("rng"):
                restore_rng(extra["rng"])
                self._require_run().guarded.boundary_rng = extra["rng"]
            if self.sampler is not None and extra.get("data") is not None:
                self.sampler.load_state_dict(extra["data"])
            return path
        return None


def _samples(batch: Any) -> int:
    if isinstance(batch, list) and batch and all(isinstance(b, dict) for b in batch):
        return len(batch)  # decollated by MONAI: one dict per sample
    try:
        return batch_size(batch)
    except TypeError:
        return 0


def _cat(values: list[Any]) -> Any:
    if values and all(isinstance(v, torch.Tensor) for v in values):
        return torch.cat(values) if len(values) > 1 else values[0]
    return values


def _loss_of_output(output: Any) -> float:
    if isinstance(output, list) and output and isinstance(output[0], dict):
        output = output[0]  # decollated by MONAI: every sample's dict carries the step's loss
    loss = output.get("loss") if isinstance(output, dict) else output
    if isinstance(loss, torch.Tensor) and loss.numel() == 1:
        return float(loss.detach())
    return float(loss) if isinstance(loss, (int, float)) else float("nan")


__all__ = ["CrashGuardHandler", "ResumableSampler"]
