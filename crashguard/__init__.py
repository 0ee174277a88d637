"""Crash Guard for your own training code (docs/integrations.md).

    import crashguard
    with crashguard.guarded_run("my-run", model=model, optimizer=optimizer) as run:
        ...
        run.step(batch, lambda b: loss_fn(model(b["image"]), b["label"]))

MONAI / Ignite: `from crashguard.monai import CrashGuardHandler`; Lightning: `from crashguard.lightning import
CrashGuardCallback`. Importing `crashguard` never imports torch: the names below load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "guarded_run": "python_backend.integrations.guarded_run",
    "GuardedRun": "python_backend.integrations.guarded_run",
    "Boundary": "python_backend.integrations.guarded_run",
    "RunStopped": "python_backend.integrations.guarded_run",
    "restore_rng_state": "python_backend.integrations.guarded_run",
    "GuardedStep": "python_backend.training.guarded_step",
    "OutOfMemoryAtMinimum": "python_backend.training.backoff",
    "UrgentStop": "python_backend.runs.urgent",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'crashguard' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
