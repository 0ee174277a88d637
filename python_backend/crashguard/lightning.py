"""Crash Guard for Lightning: `CrashGuardCallback`, for any LightningModule.

    guard = CrashGuardCallback(name="brats", runs_dir="runs")
    trainer = L.Trainer(..., callbacks=[guard])
    trainer.fit(module, loader, ckpt_path=guard.newest_checkpoint())   # None on a fresh run

The callback registers the run, keeps its status (step, epoch, loss, micro-batch, memory), answers cleanup at batch
boundaries, checkpoints through `trainer.save_checkpoint` (atomically, the newest `keep` kept) and stops on a
checkpoint-and-stop (an urgent one at once, without waiting for the step in flight), and records why the run ended.

Zero-loss out-of-memory back-off needs manual optimization, because only then does the module's own code run the
step: call `guard.step(self, batch, loss_of)` in `training_step` and the batch is split into micro-batches, an OOM
halves them and redoes the same step, the effective batch is kept. Under automatic optimization Lightning runs the
forward and backward inside `optimizer.step(closure)`, so a batch cannot be split from outside: an OOM there ends the
fit; the callback then writes a checkpoint of the last completed step (the failed step never reached the update) and
records the cause, and Resume continues from it. See docs/integrations.md.
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
from .step.backoff import OutOfMemoryAtMinimum
from .step.checkpoint import checkpoint_name, list_checkpoints, prune, restore_rng, rng_state
from .step.guarded_step import GuardedStep, LossOf, StepResult
from .step.lifecycle import Boundary, GuardedRun

log = logging.getLogger(__name__)


class CrashGuardCallback(pl.Callback):
    def __init__(self, name: str, runs_dir: str | os.PathLike[str] = "runs", *, micro_batch: int | None = None,
                 resume_args: Sequence[str] = ("--resume",), keep: int = 3, grad_clip_norm: float | None = None,
                 **run_options: Any) -> None:
        self.name = name
        self.runs_dir = runs_dir
        self.micro_batch = micro_batch
        self.grad_clip_norm = grad_clip_norm  # manual optimization: `step` clips the accumulated gradients
        self.resume_args = resume_args
        self.keep = keep
        self.run_options = run_options
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
        """The newest checkpoint of this run (for `trainer.fit(..., ckpt_path=...)`), or None."""
        found = list_checkpoints(self.checkpoint_dir)
        return str(found[-1]) if found else None

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
        self.run = GuardedRun(self.name, optimizer=optimizer, checkpoint=self._checkpoint, runs_dir=self.runs_dir,
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
        if is_oom(exception):  # automatic optimization: the step failed before its update
            exception = OutOfMemoryAtMinimum("a Lightning training step (automatic optimization: no back-off)",
                                             describe_failure(exception), limit="with the batch as given")
        run.end(exception)

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
    def _checkpoint(self, boundary: Boundary) -> Path | None:
        trainer = self.trainer
        if trainer is None:
            return None
        final = self.checkpoint_dir / checkpoint_name(boundary.step).replace(".pt", ".ckpt")
        tmp = final.with_name(f".{final.name}.tmp")
        self._rng_for_checkpoint = boundary.rng
        try:
            trainer.save_checkpoint(tmp)  # then made durable and renamed: a kill leaves no half-written .ckpt
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
        finally:
            self._rng_for_checkpoint = None
            tmp.unlink(missing_ok=True)
        prune_ckpt(self.checkpoint_dir, self.keep)
        return final

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


def prune_ckpt(directory: Path, keep: int) -> None:
    old = sorted(directory.glob("step-*.ckpt"))[:-keep]
    for path in old:
        path.unlink(missing_ok=True)
    prune(directory, keep)


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

