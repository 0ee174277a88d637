"""`crashguard train --validate-only [--checkpoint PATH]`: the guarded validation of one checkpoint, no training.

The checkpoint is the run's best.pt, else its newest intact step checkpoint, or the file given; it is loaded
weights-only and must fit the config's model. The validation is the training's own (sliding window with its
sw_batch_size and CPU-stitch fallbacks, Dice per region, the torchrun share per rank); the result is one JSON line
on stdout and a `val` record tagged `evaluation` in the run's metrics.jsonl. Nothing else of the run is touched:
no checkpoint is written or pruned, and status.json stays the trained run's. The run's lock is held meanwhile, so
an evaluation never runs beside a live training of the same run (nor the other way round).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from ..runs import lock
from ..runs.hook import RunHook, _private_dir
from ..runs.lock import RunLocked
from ..runs.status import RunState
from ..step.backoff import EXIT_OOM, OutOfMemoryAtMinimum
from ..step.checkpoint import BEST_NAME, CheckpointError, latest_intact, list_checkpoints, load_checkpoint
from ..util.json_io import json_text
from .loop import Trainer

log = logging.getLogger(__name__)
EXIT_REFUSED = 2


def resolve_evaluation(checkpoint_dir: Path, choice: str) -> tuple[Path, dict[str, Any]]:
    """'auto': best.pt, else the newest intact step checkpoint; else the path given. CheckpointError names the
    file (or the folder) when there is none or it cannot be used."""
    if choice != "auto":
        path = Path(choice)
        if not path.is_file():
            raise CheckpointError(f"{path}: no such checkpoint file")
        return path, load_checkpoint(path)
    best = checkpoint_dir / BEST_NAME
    if best.is_file():
        return best, load_checkpoint(best)  # a damaged best.pt is an error, not silently another model
    found = latest_intact(checkpoint_dir)
    if found is None:
        what = "all are damaged" if list_checkpoints(checkpoint_dir) else "none there"
        raise CheckpointError(f"{checkpoint_dir}: no checkpoint to evaluate ({what}); give --checkpoint PATH")
    return found


class EvaluationHook(RunHook):
    """An evaluation is not a training run: it holds the run's lock but never writes status.json; its events are
    logged and kept in the run's events.jsonl."""

    def start(self) -> None:
        _private_dir(self.run_dir)
        self._acquire_lock()  # also volunteers to the OOM killer, as a training run does

    def update(self, **fields: Any) -> None:
        pass

    def event(self, message: str, **fields: Any) -> None:
        log.info("%s", message)

    def finish(self, state: RunState = RunState.FINISHED, checkpoint: str | Path | None = None,
               exit_cause: str | None = None) -> None:
        if self.events is not None:
            self.events.close()
        lock.release(self._lock_file)


def evaluate_checkpoint(trainer: Trainer, picked: tuple[Path, dict[str, Any]]) -> int:
    """Validate the loaded checkpoint; print the JSON line (rank 0); the exit code."""
    path = picked[0].resolve()
    try:
        trainer.hook.start()
    except RunLocked:
        print(f"crashguard train: run '{trainer.hook.status.name}' is training now: evaluate {path} after it "
              "ends, or under another --run-name", file=sys.stderr)
        trainer.metrics.close()
        return EXIT_REFUSED
    try:
        trainer.metrics.open_sink()
        try:
            dice = trainer.validate(evaluation=True, checkpoint=str(path))
        except OutOfMemoryAtMinimum as exc:
            message = f"evaluation of {path} stopped: {exc}"
            trainer.run.event("oom_stop", message)
            print(f"crashguard train: {message}", file=sys.stderr)
            return EXIT_OOM
        if trainer.coord.is_main:
            print(json_text({"checkpoint": str(path), "step": trainer.step, "dice_mean": dice["mean"],
                             **{f"dice_{k.lower()}": v for k, v in dice.items() if k != "mean"}}), flush=True)
        return 0
    finally:
        trainer.metrics.close()
        trainer.hook.finish(RunState.FINISHED)  # an EvaluationHook: releases the lock, writes nothing
