"""Resource levels with hysteresis: a level is entered when use reaches its threshold and left only when use
falls `margin` points below it, so use hovering on a threshold does not flap between levels."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from ..monitor.thresholds import MemoryStatus
from .settings import HYSTERESIS_POINTS

Level = MemoryStatus


def raw_level(percent: float, warning: float, critical: float) -> Level:
    if percent >= critical:
        return Level.CRITICAL
    if percent >= warning:
        return Level.WARNING
    return Level.NORMAL


def next_level(current: Level, percent: float, warning: float, critical: float,
               margin: float = HYSTERESIS_POINTS) -> Level:
    """The level after a reading of `percent`, given the level the resource is at now."""
    raw = raw_level(percent, warning, critical)
    if raw.rank >= current.rank:
        return raw  # rising (or staying): thresholds apply as they are
    if current is Level.CRITICAL and percent >= critical - margin:
        return Level.CRITICAL
    if current.rank >= Level.WARNING.rank and percent >= warning - margin:
        return Level.WARNING
    return Level.NORMAL


@dataclass(frozen=True)
class Transition:
    resource: str
    previous: Level
    level: Level
    percent: float
    threshold_percent: float  # the threshold of the level entered (the warning threshold for a return to normal)


class LevelTracker:
    """The current level of every resource ("RAM", "GPU 0", ...). Thread-safe."""

    def __init__(self, margin: float = HYSTERESIS_POINTS) -> None:
        self._margin = margin
        self._levels: dict[str, Level] = {}
        self._lock = threading.Lock()

    def peek(self, resource: str, percent: float, warning: float, critical: float) -> Level:
        """The level a reading would give, without recording it (for an on-demand status)."""
        with self._lock:
            current = self._levels.get(resource, Level.NORMAL)
        return next_level(current, percent, warning, critical, self._margin)

    def update(self, resource: str, percent: float, warning: float, critical: float
               ) -> tuple[Level, Transition | None]:
        with self._lock:
            current = self._levels.get(resource, Level.NORMAL)
            level = next_level(current, percent, warning, critical, self._margin)
            self._levels[resource] = level
        if level is current:
            return level, None
        threshold = {Level.CRITICAL: critical, Level.WARNING: warning, Level.NORMAL: warning}[level]
        return level, Transition(resource, current, level, percent, threshold)

    def current(self, resource: str) -> Level:
        with self._lock:
            return self._levels.get(resource, Level.NORMAL)

    def forget_except(self, resources: set[str]) -> None:
        """Drop resources that are gone (a GPU that disappeared)."""
        with self._lock:
            for name in list(self._levels):
                if name not in resources:
                    del self._levels[name]


def worst(levels: list[Level]) -> Level:
    return max(levels, key=lambda lvl: lvl.rank, default=Level.NORMAL)
