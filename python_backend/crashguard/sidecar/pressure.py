"""Memory pressure as a level: a sustained stall is a warning even when RAM use is below its percent thresholds.

The sampler measures, for the whole system and for every live run with a cgroup v2 group of its own, the share of
the last `pressureSeconds` during which tasks were stalled waiting for memory (monitor/pressure.py). A resource
enters `warning` when the "some" share reaches `pressureSomePercent` or the "full" share `pressureFullPercent`,
and leaves it when both fall below 3/4 of their thresholds (hysteresis, as for RAM). There is no critical level:
pressure alone never makes the ladder stop a run; it warns, feeds the forecast, and with autoCleanup asks the
runs to clean up.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from ..monitor.pressure import StallShare
from .levels import Level

SYSTEM = "Memory pressure"
LEAVE_FRACTION = 0.75  # a warning ends when both shares are below this share of their thresholds


def run_resource(name: str, rank: int = 0) -> str:
    """The resource name of a run's own group's pressure."""
    return f"{SYSTEM} ({name}{f' rank {rank}' if rank else ''})"


@dataclass(frozen=True)
class PressureTransition:
    resource: str
    previous: Level
    level: Level
    kind: str  # "some" or "full": the share that decided
    percent: float
    threshold_percent: float
    seconds: float

    @property
    def message(self) -> str:
        if self.level is Level.NORMAL:
            return f"{self.resource} back to normal: tasks stalled {self.percent:.0f}% of the last {self.seconds:.0f} s"
        return (f"{self.resource}: tasks stalled {self.percent:.0f}% of the last {self.seconds:.0f} s waiting for "
                f"memory ({self.kind}; warning at {self.threshold_percent:g}%)")


def _decisive(share: StallShare, some_threshold: float, full_threshold: float) -> tuple[str, float, float]:
    """(kind, percent, threshold) of the share closest to (or furthest over) its threshold."""
    some = ("some", share.some, some_threshold)
    if share.full is None:
        return some
    full = ("full", share.full, full_threshold)
    return full if full[1] / full[2] > some[1] / some[2] else some


def next_pressure_level(current: Level, share: StallShare, some_threshold: float, full_threshold: float) -> Level:
    over = share.some >= some_threshold or (share.full is not None and share.full >= full_threshold)
    if over:
        return Level.WARNING
    if current is not Level.NORMAL:
        holding = share.some >= LEAVE_FRACTION * some_threshold or (
            share.full is not None and share.full >= LEAVE_FRACTION * full_threshold)
        if holding:
            return Level.WARNING
    return Level.NORMAL


class PressureLevels:
    """The pressure level of each source ("Memory pressure", "Memory pressure (run)"). Thread-safe."""

    def __init__(self) -> None:
        self._levels: dict[str, Level] = {}
        self._lock = threading.Lock()

    def judge(self, resource: str, share: StallShare | None, some_threshold: float, full_threshold: float,
              record: bool) -> tuple[Level, PressureTransition | None]:
        """The level after `share` (a resource without a share yet keeps its level); records it if `record`."""
        with self._lock:
            current = self._levels.get(resource, Level.NORMAL)
            if share is None:
                return current, None
            level = next_pressure_level(current, share, some_threshold, full_threshold)
            if record:
                self._levels[resource] = level
        if level is current or not record:
            return level, None
        kind, percent, threshold = _decisive(share, some_threshold, full_threshold)
        return level, PressureTransition(resource, current, level, kind, percent, threshold, share.seconds)

    def forget_except(self, resources: set[str]) -> None:
        with self._lock:
            for name in list(self._levels):
                if name not in resources:
                    del self._levels[name]


def forecast_message(resource: str, share: StallShare, level: Level, some_threshold: float,
                     full_threshold: float, ram_percent: float | None) -> str | None:
    """The forecast's line for a source under pressure (or rising towards it), else None."""
    kind, percent, threshold = _decisive(share, some_threshold, full_threshold)
    ram = f" with RAM at {ram_percent:.0f}%" if ram_percent is not None else ""
    if level is not Level.NORMAL:
        return (f"{resource}: stalled {percent:.0f}% of the last {share.seconds:.0f} s ({kind}){ram}: expect "
                "slowdowns; the OOM killer may act before RAM looks full")
    if percent >= threshold / 2:
        return f"{resource} rising: stalled {percent:.0f}% of the last {share.seconds:.0f} s ({kind}; warning at " \
               f"{threshold:g}%)"
    return None
