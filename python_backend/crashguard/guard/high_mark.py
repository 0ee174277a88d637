"""The trainer's own reaction to its memory cgroup's high mark: cleanup, back-off, checkpoint-and-stop, all before
the hard limit where the kernel's OOM killer acts.

A trainer contained with a high mark below its hard limit (`crashguard train --memory-max`, runs/containment.py)
calls `HighMarkWatch.check()` at every step boundary (a few small file reads). On cgroup v2 the kernel throttles
the group above `memory.high` and counts it (`memory.events` "high"); on v1 there is no such throttle, so the high
mark (kept in `memory.soft_limit_in_bytes`) is Crash Guard's own line. Either way the run is *over* its mark when
its working set (use minus the inactive file cache the kernel drops at once) reaches the mark, or when the kernel
throttled it since the last check while its stalls (the group's memory.pressure) show the throttling hurts; page
cache reclaimed at the mark costs nothing and is not a reason to act.

The ladder, one rung per check while over: cleanup (and, if still over, at once) back-off (halve the micro-batch:
less activation memory from the next step), again at every check that finds it still over, and checkpoint-and-stop
when it cannot back off any more or its working set has climbed past `stop_fraction` of the way from the high mark
to the hard limit (too close to gamble on another step).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..monitor.memcg import MemcgDir, MemcgReading, memcg_of, read_memcg
from .cleanup import CleanupReport

STOP_FRACTION = 0.5  # stop at once past high + this share of (max - high)
HURTING_STALL_PERCENT = 10.0  # the group's "some" avg10: throttling that costs the trainer this much is pressure


class HighMarkAction(str, enum.Enum):
    NONE = "none"
    CLEANUP = "cleanup"  # cleanup brought it back under the mark
    BACKOFF = "backoff"  # halve the micro-batch (cleanup was not enough)
    STOP = "stop"  # checkpoint and stop before the hard limit


@dataclass(frozen=True)
class HighMarkCheck:
    action: HighMarkAction
    message: str | None  # what happened, for the run's events (None while nothing happens)
    reading: MemcgReading | None


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.0f} MiB"


class HighMarkWatch:
    """One trainer's view of its own memory cgroup (not thread-safe: the training loop's thread calls it)."""

    def __init__(self, group: MemcgDir, stop_fraction: float = STOP_FRACTION,
                 reader: Callable[[MemcgDir], MemcgReading | None] = read_memcg) -> None:
        self.group = group
        self.stop_fraction = stop_fraction
        self._read = reader
        self._stage = 0  # 0: under the mark; 1+: over it in this episode (cleanup done)
        self._high_events_seen: int | None = None
        self._high_events_at_start: int | None = None
        self.over_high = 0  # checks that found the run over its mark
        self.last: MemcgReading | None = None

    @classmethod
    def for_this_process(cls) -> HighMarkWatch | None:
        """A watch on this process's memory cgroup when it has a high mark below a hard limit; else None."""
        group = memcg_of("self")
        reading = read_memcg(group) if group is not None else None
        if group is None or reading is None or reading.high is None:
            return None
        if reading.max is not None and reading.high >= reading.max:
            return None
        watch = cls(group)
        watch._remember(reading)
        return watch

    def _remember(self, reading: MemcgReading) -> None:
        if self._high_events_at_start is None:
            self._high_events_at_start = reading.high_events
        self.last = reading

    @property
    def throttled(self) -> int | None:
        """The kernel's throttle events since the watch began (cgroup v2); None on v1."""
        last = self.last
        if last is None or last.high_events is None or self._high_events_at_start is None:
            return None
        return last.high_events - self._high_events_at_start

    def status_fields(self) -> dict[str, Any]:
        """The run's containment for its status file (RunHook.update)."""
        r = self.last
        return {"memory_cgroup": str(self.group.path), "memory_max": r.max if r else None,
                "memory_high": r.high if r else None, "memory_used": r.working_set if r else None,
                "memory_high_events": self.throttled, "memory_over_high": self.over_high}

    def _over(self, r: MemcgReading) -> str | None:
        """Why the run is over its mark now, or None."""
        if r.high is None:
            return None
        if r.working_set >= r.high:
            return f"working set {_mib(r.working_set)} over the high mark {_mib(r.high)}"
        events_before, events_now = self._high_events_seen, r.high_events
        stall = r.pressure.some.avg10 if r.pressure is not None else 0.0
        if events_before is not None and events_now is not None and events_now > events_before \
                and stall >= HURTING_STALL_PERCENT:
            return (f"throttled by the kernel {events_now - events_before} times at the high mark "
                    f"{_mib(r.high)}, stalled {stall:.0f}% of the last 10 s")
        return None

    def _describe(self, r: MemcgReading, why: str) -> str:
        limit = f", hard limit {_mib(r.max)}" if r.max is not None else ""
        throttled = self.throttled
        times = f"; the kernel throttled it {throttled} times so far" if throttled else ""
        return f"memory high mark: {why}{limit}{times}"

    def check(self, can_back_off: bool, cleanup: Callable[[], CleanupReport]) -> HighMarkCheck:
        """Read the group and take the next rung if the run is over its mark (see the module's doc)."""
        r = self._read(self.group)
        if r is None:
            return HighMarkCheck(HighMarkAction.NONE, None, None)
        self._remember(r)
        why = self._over(r)
        self._high_events_seen = r.high_events
        if why is None:
            back = self._stage > 0
            self._stage = 0
            return HighMarkCheck(HighMarkAction.NONE, f"memory back under the high mark {_mib(r.high)} "
                                 f"(working set {_mib(r.working_set)})" if back else None, r)
        self.over_high += 1
        if r.max is not None and r.high is not None \
                and r.working_set >= r.high + self.stop_fraction * (r.max - r.high):
            return self._stop(r, f"{why}, too close to the hard limit to risk another step")
        freed = ""
        if self._stage == 0:
            report = cleanup()
            self._stage = 1
            after = self._read(self.group)
            if after is not None:
                self._remember(after)
                r = after
            freed = f"; cleanup freed {_mib(max(0, report.rss_freed))}"
            if after is not None and self._over(after) is None:
                return HighMarkCheck(HighMarkAction.CLEANUP, self._describe(r, why) + freed + ", back under", r)
        self._stage += 1
        if can_back_off:
            return HighMarkCheck(HighMarkAction.BACKOFF, self._describe(r, why) + freed + "; backing off", r)
        return self._stop(r, why + freed + " at the smallest micro-batch")

    def _stop(self, r: MemcgReading, why: str) -> HighMarkCheck:
        return HighMarkCheck(HighMarkAction.STOP, self._describe(r, why) + ": checkpoint and stop before the kernel's "
                             "OOM killer acts", r)
