"""One training run from a config: checks, resume, registration, the loop, and how it ends.

Everything that can refuse the run (config, data, checkpoint to resume) is checked before the run registers
or writes a file. Exit codes: 0 finished/stopped, 2 refused (config, data, checkpoint), 3 out of memory at the
smallest batch (a checkpoint is written first), 1 any other failure.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..runs.hook import RunHook
from ..runs.status import RunState
from .backoff import OutOfMemoryAtMinimum
from .check import refuse_bad_data
from .checkpoint import CheckpointError, latest_intact, list_checkpoints, load_checkpoint
from .config import TrainingConfig
from .data import load_monai_decathlon_safe
from .loop import Outcome, Trainer, check_compatible, pick_device
from .metrics import MetricsLog
from .sample_data import write_sample_dataset

log = logging.getLogger(__name__)
EXIT_REFUSED = 2
EXIT_OOM = 3


class RunRefused(RuntimeError):
    """A run that must not start; str() is one line."""


@dataclass(frozen=True)
class RunPlace:
    runs_dir: Path
    name: str
    config_path: Path | None = None

    @property
    def run_dir(self) -> Path:
        return self.runs_dir.resolve() / self.name

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"


def resolve_resume(place: RunPlace, resume: str) -> tuple[Path, dict[str, Any]] | None:
    """'auto': the newest intact checkpoint, if any; 'never': refuse if there are some; else a path."""
    if resume == "auto":
        found = latest_intact(place.checkpoint_dir)
        if found is None and list_checkpoints(place.checkpoint_dir):
            raise RunRefused(f"no intact checkpoint in {place.checkpoint_dir} (all are damaged); "
                             "use --resume never with a new --run-name")
        return found
    if resume == "never":
        if list_checkpoints(place.checkpoint_dir):
            raise RunRefused(f"run '{place.name}' already has checkpoints in {place.checkpoint_dir}: "
                             "use --resume auto, or another --run-name")
        return None
    path = Path(resume)
    try:
        return path, load_checkpoint(path)
    except CheckpointError as exc:
        raise RunRefused(str(exc)) from None


def prepare(config: TrainingConfig, place: RunPlace, resume: str = "auto", progress: bool = True
            ) -> tuple[Trainer, tuple[Path, dict[str, Any]] | None]:
    """Checks, data, model; registers the run. Raises RunRefused (or DataError) before writing anything."""
    data_cfg = config.data
    if not data_cfg.task_dir.is_dir() and data_cfg.synthetic_if_missing and not data_cfg.download:
        log.info("writing the synthetic sample dataset to %s", data_cfg.task_dir)
        write_sample_dataset(data_cfg.task_dir)
    if data_cfg.check != "off" and not data_cfg.download:
        count = refuse_bad_data(data_cfg.task_dir, data_cfg.check)
        log.info("data check (%s): %d cases OK", data_cfg.check, count)
    resumed = resolve_resume(place, resume)
    if resumed is not None:
        try:
            check_compatible(config, resumed[1])
        except CheckpointError as exc:
            raise RunRefused(f"{resumed[0]}: {exc}") from None
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    device = pick_device(config.train.device)
    data = load_monai_decathlon_safe(
        data_cfg.root, data_cfg.task, batch_size=config.train.effective_batch, cache_rate=data_cfg.cache_rate,
        roi_size=config.train.roi_size, workers=data_cfg.resolved_workers(), val_fraction=data_cfg.val_fraction,
        seed=config.train.seed, download=data_cfg.download, ram_headroom_gb=config.memory.ram_headroom_gb)
    hook = RunHook(place.name, runs_dir=place.runs_dir, config=place.config_path)
    metrics = MetricsLog(place.run_dir / "metrics.jsonl")
    trainer = Trainer(config, data, hook, metrics, device, progress=progress)
    if resumed is not None:
        trainer.load_state(resumed[1])
        trainer.last_checkpoint = resumed[0]
    return trainer, resumed


def execute(trainer: Trainer, resumed: tuple[Path, dict[str, Any]] | None) -> Outcome:
    """Register, train, and end the run with a terminal state in status.json."""
    hook = trainer.hook
    hook.stop_on_signals()
    hook.start()
    # Keep the history up to the checkpoint; a fresh start (even after a run that died before its first
    # checkpoint) starts an empty file.
    dropped = trainer.metrics.rewind(trainer.step if resumed is not None else -1)
    hook.update(step=trainer.step, micro_batch=trainer.plan.micro, accumulation=trainer.plan.accumulation)
    if resumed is not None and trainer.step >= trainer.total_steps:
        pass  # nothing left to do: fit() reports "already complete"
    elif resumed is not None:
        trainer.event("resume", f"resumed from {resumed[0].name} at step {trainer.step} (micro-batch "
                      f"{trainer.plan.micro}); dropped {dropped} metric lines of the interrupted attempt",
                      checkpoint=str(resumed[0]))
    else:
        trainer.event("start", f"started: {trainer.total_steps} steps, effective batch {trainer.plan.effective}, "
                      f"micro-batch {trainer.plan.micro}, device {trainer.device.type}, "
                      f"{trainer.data.cache.describe()}, workers {trainer.data.workers}")
    try:
        outcome = trainer.fit()
    except OutOfMemoryAtMinimum as exc:
        # The failed step never reached the optimizer: the model is the last completed step's, safe to keep.
        path = trainer.save()
        message = f"{exc}; stopped with a checkpoint at step {trainer.step} ({path})"
        trainer.event("oom_stop", message)
        hook.finish(RunState.FAILED, checkpoint=path, exit_cause=message)
        trainer.metrics.close()
        return Outcome("failed", EXIT_OOM, message, path)
    except BaseException as exc:
        cause = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        hook.finish(RunState.FAILED, exit_cause=cause[:500])
        trainer.metrics.close()
        raise
    state = RunState(outcome.state)
    hook.finish(state, checkpoint=outcome.checkpoint,
                exit_cause="checkpoint-and-stop" if state is RunState.STOPPED else None)
    trainer.metrics.write("event", step=trainer.step, event=outcome.state, message=outcome.message)
    trainer.metrics.close()
    return outcome
