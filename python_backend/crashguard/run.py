"""Crash Guard for a plain PyTorch loop or a notebook: `with guarded_run("name", ...) as run: run.step(batch, fn)`.

    with crashguard.guarded_run("unet", model=model, optimizer=optimizer) as run:
        start = run.resume()                           # the newest intact checkpoint of this run, if any
        for step, batch in enumerate(batches(start), start):
            run.step(batch, lambda b: loss_fn(model(b["image"]), b["label"]))
            if run.should_stop:                        # checkpoint-and-stop asked: leave at this boundary
                break

The run registers (status, control, exit cause, a resume command), each `run.step` is one guarded optimizer step
(micro-batches, OOM back-off that loses no sample, the same step redone), cleanup requests are answered at step
boundaries, a checkpoint-and-stop writes a checkpoint at the next boundary, an urgent one at once (the step in flight
is abandoned). The MONAI handler, the Lightning callback and `crashguard train` stand on the same lifecycle
(crashguard/step/lifecycle.py).
"""

from __future__ import annotations

from typing import Any

from .step.checkpoint import restore_rng
from .step.lifecycle import Boundary, CheckpointFn, GuardedRun, RunStopped, StepFn


def guarded_run(name: str, **options: Any) -> GuardedRun:
    """A registered, guarded run of your own loop; use it as a context manager (see GuardedRun)."""
    return GuardedRun(name, **options)


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore the RNG states a Boundary carried (python, numpy, torch, CUDA)."""
    restore_rng(state)


__all__ = ["Boundary", "CheckpointFn", "GuardedRun", "RunStopped", "StepFn", "guarded_run", "restore_rng_state"]
