"""Time to the next threshold from the recent trend: a least-squares line through the last ~30 s of use."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .levels import Level

WINDOW_SECONDS = 30.0
HORIZON_SECONDS = 600.0  # a crossing further away than this is not worth a forecast
MIN_POINTS = 3
MIN_SPAN_SECONDS = 2.0


@dataclass(frozen=True)
class Trend:
    bytes_per_second: float
    latest: float  # the last reading, bytes


def least_squares_slope(points: list[tuple[float, float]]) -> float | None:
    """Slope of the least-squares line through (t, y) points; None if it is undefined."""
    n = len(points)
    if n < 2:
        return None
    mean_t = sum(t for t, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var_t = sum((t - mean_t) ** 2 for t, _ in points)
    if var_t == 0:
        return None
    return sum((t - mean_t) * (y - mean_y) for t, y in points) / var_t


class History:
    """Recent (time, used bytes) readings of one resource."""

    def __init__(self, window: float = WINDOW_SECONDS) -> None:
        self._window = window
        self._points: deque[tuple[float, float]] = deque()

    def add(self, t: float, used: float) -> None:
        self._points.append((t, used))
        while self._points and t - self._points[0][0] > self._window:
            self._points.popleft()

    def trend(self) -> Trend | None:
        if len(self._points) < MIN_POINTS or self._points[-1][0] - self._points[0][0] < MIN_SPAN_SECONDS:
            return None
        slope = least_squares_slope(list(self._points))
        if slope is None:
            return None
        return Trend(bytes_per_second=slope, latest=self._points[-1][1])


@dataclass(frozen=True)
class Crossing:
    level: str  # "warning", "critical" or "full"
    seconds: float
    bytes_per_second: float


def next_crossing(trend: Trend, total: int, level: Level, warning_percent: float, critical_percent: float,
                  horizon: float = HORIZON_SECONDS) -> Crossing | None:
    """When the resource, rising at the trend, reaches the level above `level` (critical's next is full)."""
    if trend.bytes_per_second <= 0 or total <= 0:
        return None
    targets = [("warning", warning_percent), ("critical", critical_percent), ("full", 100.0)]
    start = {Level.NORMAL: 0, Level.WARNING: 1, Level.CRITICAL: 2}[level]
    for name, percent in targets[start:]:
        remaining = total * percent / 100.0 - trend.latest
        if remaining <= 0:
            continue  # already past it (hysteresis kept the lower level): look at the next one
        seconds = remaining / trend.bytes_per_second
        if seconds > horizon:
            return None
        return Crossing(level=name, seconds=round(seconds, 1), bytes_per_second=round(trend.bytes_per_second))
    return None


def describe(resource: str, crossing: Crossing) -> str:
    seconds = crossing.seconds
    when = f"~{seconds:.0f} s" if seconds < 120 else f"~{seconds / 60:.0f} min"
    what = "full" if crossing.level == "full" else crossing.level
    return f"{resource} {what} in {when}"
