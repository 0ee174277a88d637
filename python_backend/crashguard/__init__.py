"""Crash Guard: keeps deep-learning work from running the machine out of RAM or VRAM.

Your own training (docs/integrations.md):

    import crashguard
    with crashguard.guarded_run("my-run", model=model, optimizer=optimizer) as run:
        ...
        run.step(batch, lambda b: loss_fn(model(b["image"]), b["label"]))

MONAI / Ignite: `from crashguard.monai import CrashGuardHandler`; Lightning: `from crashguard.lightning import
CrashGuardCallback`. Memory readings and guards for any code: `MemoryMonitor`, `GPUMonitor`, `safe_execution`,
`memory_safe_context`, `gpu_safe_context`, `emergency_cleanup`.

Importing `crashguard` imports nothing else (not torch, not psutil): each name below loads its module on first
use, so the pytest plugin, the sidecar and `crashguard --help` pay only for what they use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .util.version import __version__ as __version__

# name -> the module (under this package) that defines it
_LAZY = {
    "GPUMonitor": ".monitor.gpu",
    "MemoryMonitor": ".monitor.host",
    "MemoryPressureError": ".guard.failures",
    "emergency_cleanup": ".guard.cleanup",
    "gpu_safe_context": ".guard.contexts",
    "memory_safe_context": ".guard.contexts",
    "safe_execution": ".guard.retry",
    "UrgentStop": ".runs.urgent",
    "GuardedStep": ".step.guarded_step",
    "OutOfMemoryAtMinimum": ".step.backoff",
    "Boundary": ".step.lifecycle",
    "GuardedRun": ".step.lifecycle",
    "RunStopped": ".step.lifecycle",
    "ResumableSampler": ".step.data_position",
    "CrashGuardWarning": ".step.notices",
    "guarded_run": ".run",
    "restore_rng_state": ".run",
}
__all__ = [
    "Boundary", "CrashGuardWarning", "GPUMonitor", "GuardedRun", "GuardedStep", "MemoryMonitor",
    "MemoryPressureError", "OutOfMemoryAtMinimum", "ResumableSampler", "RunStopped", "UrgentStop",
    "emergency_cleanup", "gpu_safe_context", "guarded_run", "memory_safe_context", "restore_rng_state",
    "safe_execution",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ loads each name on first use
    from .guard.cleanup import emergency_cleanup
    from .guard.contexts import gpu_safe_context, memory_safe_context
    from .guard.failures import MemoryPressureError
    from .guard.retry import safe_execution
    from .monitor.gpu import GPUMonitor
    from .monitor.host import MemoryMonitor
    from .run import guarded_run, restore_rng_state
    from .runs.urgent import UrgentStop
    from .step.backoff import OutOfMemoryAtMinimum
    from .step.data_position import ResumableSampler
    from .step.guarded_step import GuardedStep
    from .step.lifecycle import Boundary, GuardedRun, RunStopped
    from .step.notices import CrashGuardWarning


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'crashguard' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return [*__all__, "__version__"]
