"""The escalation ladder: warning -> (if auto-cleanup) cleanup requests to every live run -> critical -> (if
configured) checkpoint-and-stop of the guarded run using most of the resource in trouble.

Decisions are pure (`plan`); actions run on one worker thread so a slow run never stalls sampling, and each
one is reported to the client as a `crashGuard/action` notification.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..runs.control import cleanup_runs, stop_run
from ..runs.registry import Registry, RunInfo
from .levels import Level, Transition
from .registries import Registries
from .settings import Settings

log = logging.getLogger(__name__)
CLEANUP_COOLDOWN_SECONDS = 30.0  # one cleanup round per episode; pressure that persists gets the next rung
CLEANUP = "cleanup"
STOP = "checkpointAndStop"


@dataclass(frozen=True)
class Step:
    action: str  # CLEANUP or STOP
    resource: str  # "RAM", "GPU 0", ...
    reason: str


def plan(transitions: list[Transition], settings: Settings) -> list[Step]:
    """The rungs to climb for the levels just entered (only rising transitions act)."""
    steps: list[Step] = []
    for t in transitions:
        if t.level.rank <= t.previous.rank:
            continue
        reason = f"{t.resource} {t.level.value} ({t.percent:.0f}% >= {t.threshold_percent:g}%)"
        if settings.auto_cleanup and not any(s.action == CLEANUP for s in steps):
            steps.append(Step(CLEANUP, t.resource, reason))
        if t.level is Level.CRITICAL and settings.critical_action == "checkpointAndStop":
            steps.append(Step(STOP, t.resource, reason))
    return steps


def heaviest(runs: list[RunInfo], resource: str) -> RunInfo | None:
    """The live run using most of `resource`: tree RSS for RAM, VRAM for a GPU."""
    live = [r for r in runs if r.alive]
    if resource == "RAM":
        return max(live, key=lambda r: r.tree_rss or 0, default=None)
    with_vram = [r for r in live if r.vram]
    return max(with_vram, key=lambda r: r.vram or 0, default=None)


class Escalation:
    def __init__(self, on_action: Callable[[str, str, Any], None], still_critical: Callable[[str], bool],
                 runs: Callable[[], list[RunInfo]]) -> None:
        self._on_action = on_action  # (action, reason, result)
        self._still_critical = still_critical
        self._runs = runs
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="escalation")
        self._busy = threading.Lock()
        self._last_cleanup = -float("inf")

    def react(self, transitions: list[Transition], settings: Settings, registry: Registry | Registries) -> bool:
        """Start the planned actions unless a previous round is still running; True if a round started."""
        steps = plan(transitions, settings)
        if not steps:
            return False
        if not self._busy.acquire(blocking=False):
            log.info("escalation still busy; skipping %s", ", ".join(s.action for s in steps))
            return False
        self._executor.submit(self._run, steps, registry)
        return True

    def _run(self, steps: list[Step], registry: Registry | Registries) -> None:
        try:
            for step in steps:
                if step.action == CLEANUP:
                    self._cleanup(step, registry)
                else:
                    self._stop(step, registry)
        except Exception:  # an action failing must not kill the worker or the sidecar
            log.exception("escalation step failed")
        finally:
            self._busy.release()

    def _cleanup(self, step: Step, registry: Registry | Registries) -> None:
        now = time.monotonic()
        if now - self._last_cleanup < CLEANUP_COOLDOWN_SECONDS:
            log.info("cleanup for %s skipped: one ran %.0f s ago", step.reason, now - self._last_cleanup)
            return
        self._last_cleanup = now
        result = cleanup_runs(registry.runs_dir, registry=registry)
        self._on_action(CLEANUP, step.reason, result)

    def _stop(self, step: Step, registry: Registry | Registries) -> None:
        if not self._still_critical(step.resource):
            log.info("%s is no longer critical after cleanup: no run stopped", step.resource)
            return
        victim = heaviest(self._runs(), step.resource)
        if victim is None:
            log.warning("%s critical but no guarded run uses it: nothing to stop", step.resource)
            return
        owner = registry.owner(victim.dir) if isinstance(registry, Registries) else registry  # not a namesake
        if owner is None:
            return
        result = stop_run(owner.runs_dir, victim.name, registry=owner)
        self._on_action(STOP, f"{step.reason}; {victim.name} used the most", result)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
