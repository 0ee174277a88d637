"""Crash Guard for Lightning: `CrashGuardCallback`, for any LightningModule.

    guard = CrashGuardCallback(name="brats", runs_dir="runs")
    trainer = L.Trainer(..., callbacks=[guard])
    loader = StatefulDataLoader(dataset, batch_size=4, shuffle=True)   # torchdata: the data position
    trainer.fit(module, loader, ckpt_path=guard.newest_checkpoint(), weights_only=True)   # None on a fresh run

The callback registers the run, keeps its status (step, epoch, loss, micro-batch, memory), answers cleanup at batch
boundaries, checkpoints Lightning's own checkpoint (what `trainer.save_checkpoint` writes: `ckpt_path` resumes from
it) periodically (`checkpoint_every_steps`, `checkpoint_every_minutes`: 10 by default; written in the background,
atomically, the newest `keep` kept), stops on a checkpoint-and-stop (an urgent one at once, without waiting for the
step in flight), and records why the run ended. With a torchdata `StatefulDataLoader` Lightning keeps the data
position in that checkpoint, so a resumed fit sees exactly the samples of an uninterrupted one.

Zero-loss out-of-memory back-off needs manual optimization, because only then does the module's own code run the
step: call `guard.step(self, batch, loss_of)` in `training_step` and the batch is split into micro-batches, an OOM
halves them and redoes the same step, the effective batch is kept. Under automatic optimization Lightning runs the
forward and backward inside `optimizer.step(closure)`, so a batch cannot be split from outside: an OOM there ends the
fit; the callback then writes a checkpoint of the last completed step (the failed step never reached the update),
records the cause and ends the traceback with what was saved and how to resume, and Resume continues from it. See
docs/integrations.md.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from .guard.failures import describe_failure, is_oom
from .guard.oom_score import DEFAULT_OOM_SCORE_ADJ
from .step.backoff import OutOfMemoryAtMinimum
from .step.checkpoint import checkpoint_name, list_checkpoints, restore_rng, rng_state
from .step.guarded_step import GuardedStep, LossOf, StepResult
from .step.lifecycle import Boundary, Capture, GuardedRun
from .step.notices import say
from .step.run_checkpoints import DEFAULT_EVERY_MINUTES

log = logging.getLogger(__name__)


class CrashGuardCallback(pl.Callback):
    """See the module docstring. `checkpoint_every_steps`/`checkpoint_every_minutes`: periodic checkpoints;
    `oom_score_adj`: what the process volunteers to the kernel's OOM killer with while it trains (0 or None:
    nothing; restored at the end). Other keywords go to the run (`GuardedRun`)."""

    def __init__(self, name: str, runs_dir: str | os.PathLike[str] = "runs", *, micro_batch: int | None = None,
                 resume_args: Sequence[str] = ("--resume",), keep: int = 3, grad_clip_norm: float | None = None,
                 checkpoint_every_steps: int | None = None,
                 checkpoint_every_minutes: float | None = DEFAULT_EVERY_MINUTES,
                 oom_score_adj: int | None = DEFAULT_OOM_SCORE_ADJ, **run_options: Any) -> None:
        self.name = name
        self.runs_dir = runs_dir
        self.micro_batch = micro_batch
        self.grad_clip_norm = grad_clip_norm  # manual optimization: `step` clips the accumulated gradients
        self.resume_args = resume_args
        self.keep = keep
        self.run_options = {"checkpoint_every_steps": checkpoint_every_steps,
                            "checkpoint_every_minutes": checkpoint_every_minutes, "oom_score_adj": oom_score_adj,
                            **run_options}
        self.run: GuardedRun | None = None
        self.trainer: pl.Trainer | None = None
        self._manual: GuardedStep | None = None
        self._holding_lock = False
        self._rng_for_checkpoint: dict[str, Any] | None = None
        self._restored_rng: dict[str, Any] | None = None

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.runs_dir).resolve() / self.name / "checkpoints"

    def newest_checkpoint(self) -> str | None:
        """The newest intact checkpoint of this run (for `trainer.fit(..., ckpt_path=...)`), or None. Each candidate
        is opened weights-only (memory-mapped: its tensors are not read): a damaged or crafted file is skipped."""
        for path in reversed(list_checkpoints(self.checkpoint_dir)):
            try:
                torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except Exception as exc:  # damaged, or not weights-only: the one before it
                log.warning("skipping checkpoint %s: %s", path.name, str(exc).splitlines()[0][:160] if str(exc)
                            else type(exc).__name__)
                continue
            return str(path)
        if (self.checkpoint_dir.parent / "status.json").exists():  # an earlier process of this run left nothing
            say(f"no checkpoint to resume from (run {self.name}): starting at step 0")
        return None

    # -- set-up and lifecycle -----------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.trainer = trainer
        if trainer.world_size > 1 and not pl_module.automatic_optimization:
            raise RuntimeError("CrashGuardCallback.step coordinates one process; under Lightning's DDP the ranks "
                               "would back off alone (see docs/integrations.md)")
        if pl_module.automatic_optimization and self.grad_clip_norm is not None:
            raise ValueError("CrashGuardCallback(grad_clip_norm=...) clips in its guarded step (manual optimization); "
                             "under automatic optimization Lightning clips: Trainer(gradient_clip_val=...)")
        optimizer = trainer.optimizers[0]
        self._manual = GuardedStep(optimizer, micro_batch=self.micro_batch, backward=pl_module.manual_backward,
                                   grad_clip_norm=self.grad_clip_norm) if not pl_module.automatic_optimization \
            else GuardedStep(optimizer, micro_batch=self.micro_batch)
        self.run = GuardedRun(self.name, optimizer=optimizer, capture=self._capture, runs_dir=self.runs_dir,
                              resume_args=self.resume_args, keep=self.keep, guarded=self._manual,
                              **self.run_options)
        self.run.start()
        self.run.completed_steps = trainer.global_step
        if self._restored_rng is not None:
            self.run.guarded.boundary_rng = self._restored_rng
        if trainer.ckpt_path:  # fit(..., ckpt_path=...) restored that checkpoint before this hook
            self.run.resumed(Path(trainer.ckpt_path))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.run is not None:
            self.run.epoch = trainer.current_epoch

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        """Automatic optimization: forward and backward are done, the update follows; hold the step's lock until
        the batch ends, so an urgent stop sees the last completed step."""
        if self.run is not None and pl_module.automatic_optimization and not self._holding_lock:
            self.run.guarded.lock.acquire()
            self._holding_lock = True

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        run = self.run
        if run is None:
            return
        if pl_module.automatic_optimization:
            run.guarded.completed = trainer.global_step
            run.guarded.boundary_rng = rng_state()
            self._release()
            samples = _samples(batch)
            result = StepResult(_loss(outputs), samples, samples, 1)  # Lightning's own step: the whole batch
        else:
            samples = _samples(batch)
            result = run.last or StepResult(_loss(outputs), samples, samples, 1)
        run.after_step(result)
        if run.should_stop:
            run.checkpoint_now()  # at this boundary; the fit then ends after this batch
            trainer.should_stop = True

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._release()
        if self.run is not None:
            self.run.end()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._release()
        run = self.run
        if run is None:
            return
        oom = is_oom(exception)
        if oom:  # automatic optimization: the step failed before its update
            ending: BaseException = OutOfMemoryAtMinimum(
                "a Lightning training step (automatic optimization: no back-off)", describe_failure(exception),
                limit="with the batch as given")
        else:
            ending = exception
        outcome = run.end(ending)
        if oom and pl_module.automatic_optimization:
            self._explain_oom(exception, outcome.checkpoint)

    def _explain_oom(self, exception: BaseException, checkpoint: Path | None) -> None:
        """The end of the traceback Lightning prints: what was saved, how to resume, how to get the back-off."""
        saved = (f"saved the last completed step (step {self.run.completed_steps if self.run else '?'}) to "
                 f"{checkpoint}" if checkpoint is not None else "no checkpoint could be saved")
        resume = self.run.hook.status.resume_command if self.run is not None else None
        how = (" ".join(resume["argv"]) if resume else
               "trainer.fit(module, loader, ckpt_path=guard.newest_checkpoint(), weights_only=True)")
        message = (f"crashguard: out of memory in a Lightning training step under automatic optimization; {saved}. "
                   f"Resume: {how}. For the zero-loss back-off (the batch split into micro-batches, no sample "
                   f"lost), use manual optimization: self.automatic_optimization = False and "
                   f"guard.step(self, batch, loss_of) in training_step (docs/integrations.md).")
        if hasattr(exception, "add_note"):
            exception.add_note(message)  # printed after the traceback
        else:
            say(message.removeprefix("crashguard: "))

    def _release(self) -> None:
        if self._holding_lock and self.run is not None:
            self._holding_lock = False
            self.run.guarded.lock.release()

    # -- manual optimization: the guarded step -------------------------------------------------------------
    def step(self, pl_module: pl.LightningModule, batch: Any, loss_of: LossOf) -> torch.Tensor:
        """One guarded optimizer step in `training_step` (manual optimization): `loss_of(micro_batch)` returns the
        micro-batch's mean loss; backward (`manual_backward`) and the optimizer step are done here."""
        run = self.run
        if run is None or self._manual is None:
            raise RuntimeError("CrashGuardCallback.step: add the callback to the Trainer's callbacks")
        optimizer = pl_module.optimizers()
        if isinstance(optimizer, list):
            raise RuntimeError("CrashGuardCallback.step drives one optimizer")
        self._manual._optimizer_step = optimizer.step  # LightningOptimizer: precision and strategy hooks
        result = self._manual.run(batch, loss_of)
        run._last = result
        return torch.tensor(result.loss)

    # -- checkpoints ---------------------------------------------------------------------------------------
    def _capture(self, boundary: Boundary) -> Capture | None:
        """Lightning's own checkpoint of this boundary (what `trainer.save_checkpoint` writes, the loops' state and
        a StatefulDataLoader's position included), under the step's lock; the run writes it, in the background
        for a periodic one."""
        trainer = self.trainer
        if trainer is None:
            return None
        self._rng_for_checkpoint = boundary.rng
        try:
            state = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
        finally:
            self._rng_for_checkpoint = None
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            _mark_loaders_finished(state)
        return Capture(self.checkpoint_dir / checkpoint_name(boundary.step, ".ckpt"), state, self.keep)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        rng = self._rng_for_checkpoint or rng_state()
        checkpoint["crashguard"] = {"step": trainer.global_step, "rng": rng}

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        extra = checkpoint.get("crashguard") or {}
        if extra.get("rng"):
            restore_rng(extra["rng"])
            self._restored_rng = extra["rng"]


def _mark_loaders_finished(state: dict[str, Any]) -> None:
    """A checkpoint of an epoch's last batch resumes at the next epoch, but Lightning hands that epoch's loader the
    saved position: a StatefulDataLoader that has yielded its last batch without yet raising StopIteration would
    then yield nothing, and the whole epoch is skipped. Marked finished, it starts the next epoch from its restored
    sampler, as the uninterrupted run does."""
    loaders = state.get("loops", {}).get("fit_loop", {}).get("state_dict", {}).get("combined_loader") or []
    for loader in loaders:
        if isinstance(loader, dict) and "_iterator_finished" in loader:  # torchdata's key
            loader["_iterator_finished"] = True


def _loss(outputs: Any) -> float:
    value = outputs.get("loss") if isinstance(outputs, dict) else outputs
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.detach())
    return float("nan")


def _samples(batch: Any) -> int:
    from .step.batches import batch_size

    try:
        return batch_size(batch)
    except TypeError:
        return 0

