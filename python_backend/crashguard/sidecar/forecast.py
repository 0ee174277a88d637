"""Time to the next threshold from the recent trend: a least-squares line through the last ~30 s of use; and, for
the escalation ladder and the sampling schedule, how fast use is rising right now.

A 30-s line moves slowly: in a spike that began a second ago it still says "flat". The ladder's time to the limit
therefore takes the faster of that line and the slope over the last second (RECENT_SECONDS), and the sampling
schedule (schedule.py) takes the fastest rise between two samples of the window.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .levels import Level

WINDOW_SECONDS = 30.0
HORIZON_SECONDS = 600.0  # a crossing further away than this is not worth a forecast
MIN_POINTS = 3
MIN_SPAN_SECONDS = 2.0
RECENT_SECONDS = 1.0  # "rising right now": the slope over this much of the latest readings (at least two)
MIN_PAIR_SECONDS = 0.05  # two readings closer than this say nothing about a rate


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
        self._rises: deque[tuple[float, float]] = deque()  # (time, bytes/s since the reading before)

    def add(self, t: float, used: float) -> None:
        if self._points:
            t0, used0 = self._points[-1]
            if t - t0 >= MIN_PAIR_SECONDS:
                self._rises.append((t, (used - used0) / (t - t0)))
        self._points.append((t, used))
        while self._points and t - self._points[0][0] > self._window:
            self._points.popleft()
        while self._rises and t - self._rises[0][0] > self._window:
            self._rises.popleft()

    def fastest_rise(self) -> float | None:
        """The fastest rise between two successive readings of the window, bytes/s (None: no pair yet)."""
        return max((rate for _, rate in self._rises), default=None)

    def recent_rate(self, span: float = RECENT_SECONDS) -> float | None:
        """The least-squares slope of the readings of the last `span` seconds (at least the last two), bytes/s."""
        latest = self._points[-1][0] if self._points else 0.0
        recent: list[tuple[float, float]] = []
        for point in reversed(self._points):  # newest first; past `span` only to make a usable pair
            if len(recent) >= 2 and latest - point[0] > span and latest - recent[-1][0] >= MIN_PAIR_SECONDS:
                break
            recent.append(point)
        return least_squares_slope(recent)

    def latest(self) -> float | None:
        """The last reading, bytes."""
        return self._points[-1][1] if self._points else None

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


def seconds_to_limit(history: History, total: float) -> float | None:
    """When use reaches `total` (the limit: 100 %), rising at the faster of the 30-s trend and the recent rate;
    None when it is not rising (or too little is known). 0 when it is there already."""
    points = history.latest()
    if points is None:
        return None
    trend = history.trend()
    rates = [rate for rate in (trend.bytes_per_second if trend else None, history.recent_rate()) if rate is not None]
    rate = max(rates, default=0.0)
    if rate <= 0:
        return None
    return max(0.0, total - points) / rate


def describe(resource: str, crossing: Crossing) -> str:
    seconds = crossing.seconds
    when = f"~{seconds:.0f} s" if seconds < 120 else f"~{seconds / 60:.0f} min"
    what = "full" if crossing.level == "full" else crossing.level
    return f"{resource} {what} in {when}"
