"""A bounded history of the sidecar's samples and of what happened meanwhile, for the memory report.

Ring buffers (deques with a maxlen): the last ~15 minutes of compact points at the sample interval, capped, and
the last few hundred events (level changes, run events, a run's own notes such as OOM back-offs and checkpoints,
the sidecar's automatic actions). Plain Python, no numpy: it lives in the sidecar, which must stay light.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

HISTORY_SECONDS = 15 * 60.0
MAX_POINTS = 3600  # 15 min at 250 ms; a faster interval keeps less time rather than more memory
MAX_EVENTS = 500
SLOT_SHARE = 0.9  # points closer than this share of the sample interval share one slot (a tick may come early)

# Event kinds: a resource changed level, a run started/ended/crashed, a run reported something of its own
# (RunInfo.lastEvent: OOM back-off, cleanup, checkpoint, ...), the sidecar acted on its own.
LEVEL, RUN, TRAINING, ACTION = "level", "run", "training", "action"
# The `level` of a RUN event for a status file or run folder that failed a check (runs/registry.py, Refusal).
REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    time: float  # epoch seconds
    ram_percent: float
    ram_used: int  # bytes
    gpu_percent: tuple[float | None, ...]  # one per GPU, in the sample's order; None when NVML gave no figure


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    time: float
    kind: str  # level | run | training | action
    message: str
    resource: str | None = None  # "RAM", "GPU 0" for level changes
    level: str | None = None  # the level entered (level changes) or the run event (started, crashed, ...)
    run: str | None = None


def capacity(interval_s: float, seconds: float = HISTORY_SECONDS, cap: int = MAX_POINTS) -> int:
    """How many points hold `seconds` at this sample interval, at most `cap`."""
    return max(1, min(cap, math.ceil(seconds / max(interval_s, 1e-3))))


class SampleHistory:
    """Thread-safe: the sampling thread appends, the escalation worker adds actions, requests read."""

    def __init__(self, interval_s: float, seconds: float = HISTORY_SECONDS, max_points: int = MAX_POINTS,
                 max_events: int = MAX_EVENTS) -> None:
        self._seconds = seconds
        self._max_points = max_points
        self._slot = interval_s * SLOT_SHARE
        self._slot_start = -math.inf
        self._points: deque[HistoryPoint] = deque(maxlen=capacity(interval_s, seconds, max_points))
        self._events: deque[HistoryEvent] = deque(maxlen=max_events)
        self._lock = threading.Lock()

    @property
    def max_points(self) -> int:
        return self._points.maxlen or 0

    def set_interval(self, interval_s: float) -> None:
        """A new sample interval: keep the newest points that still fit."""
        size = capacity(interval_s, self._seconds, self._max_points)
        with self._lock:
            self._slot = interval_s * SLOT_SHARE
            if size != self._points.maxlen:
                self._points = deque(self._points, maxlen=size)

    def add_point(self, point: HistoryPoint) -> None:
        """Near the limit samples come faster than the interval (schedule.py): one point per interval is kept, the
        one with the highest RAM use, so a spike's peak shows and the buffer still holds its ~15 minutes."""
        with self._lock:
            if self._points and point.time - self._slot_start < self._slot:
                if point.ram_percent > self._points[-1].ram_percent:
                    self._points[-1] = point
                return
            self._points.append(point)
            self._slot_start = point.time

    def add_event(self, event: HistoryEvent) -> None:
        with self._lock:
            self._events.append(event)

    def window(self, seconds: float | None, now: float) -> tuple[list[HistoryPoint], list[HistoryEvent]]:
        """Points and events of the last `seconds` (all that is kept when None), oldest first."""
        with self._lock:
            points, events = list(self._points), list(self._events)
        if seconds is None:
            return points, events
        since = now - seconds
        return [x for x in points if x.time >= since], [e for e in events if e.time >= since]

    def __len__(self) -> int:
        return len(self._points)
