"""What a run does about memory at a step boundary, before the ranks agree on it (step/lifecycle.py).

Two readings, both optional:
- the machine's RAM against the run's own thresholds (`RamThresholds`: `crashguard train`'s
  memory.log_ram_fraction and memory.backoff_ram_fraction). These are the trainer's in-loop reaction, not the
  editor's crashGuard.ramWarningPercent / ramCriticalPercent, which drive the monitor's warnings and ladder;
- the run's memory cgroup's high mark, when it has one (guard/high_mark.py): cleanup, back-off, then
  checkpoint-and-stop before the hard limit.

The verdict says why the micro-batch should be halved and why the run should stop; GuardedRun agrees on both with
the other ranks and acts, so every rank halves or stops at the same step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..guard.cleanup import CleanupReport
from ..guard.high_mark import HighMarkAction, HighMarkWatch
from ..monitor.host import read_ram

RAM_NOTE_INTERVAL_S = 60.0  # a RAM warning event at most this often


@dataclass(frozen=True)
class RamThresholds:
    """Shares (0-1] of the machine's RAM."""

    log_fraction: float  # at or above: a `ram_warning` event (at most once a minute)
    backoff_fraction: float  # at or above: cleanup, and if still over, halve the micro-batch before an OOM


@dataclass(frozen=True)
class MemoryVerdict:
    halve: str | None = None  # why to halve the micro-batch before the next step
    stop: str | None = None  # why to checkpoint and stop (the high mark: too close to the hard limit)


EventSink = Callable[[str, str], None]  # (kind, message)


class MemoryWatch:
    def __init__(self, ram: RamThresholds | None, high_mark: HighMarkWatch | None,
                 cleanup: Callable[[], CleanupReport], event: EventSink,
                 update_status: Callable[..., None]) -> None:
        self.ram = ram
        self.high_mark = high_mark
        self._cleanup = cleanup
        self._event = event
        self._update_status = update_status
        self._noted_at = -RAM_NOTE_INTERVAL_S
        self.ram_percent: float | None = None  # the last RAM reading (a progress bar shows it)

    @property
    def active(self) -> bool:
        return self.ram is not None or self.high_mark is not None

    def check(self, can_back_off: bool) -> MemoryVerdict:
        self.ram_percent, halve = self._check_ram(can_back_off)
        high_halve, stop = self._check_high_mark(can_back_off)
        return MemoryVerdict(halve or high_halve, stop)

    def _check_ram(self, can_back_off: bool) -> tuple[float | None, str | None]:
        limits = self.ram
        if limits is None:
            return None, None
        ram = read_ram()
        if ram.fraction >= limits.backoff_fraction:
            report = self._cleanup()
            ram = read_ram()
            if ram.fraction >= limits.backoff_fraction and can_back_off:
                return ram.percent, (f"RAM at {ram.percent:.0f}% (backoff_ram_fraction {limits.backoff_fraction:.0%}) "
                                     f"after cleanup (freed {report.rss_freed / 2**20:.0f} MiB)")
        elif ram.fraction >= limits.log_fraction and time.monotonic() - self._noted_at > RAM_NOTE_INTERVAL_S:
            self._noted_at = time.monotonic()
            self._event("ram_warning", f"RAM at {ram.percent:.0f}% (log_ram_fraction {limits.log_fraction:.0%})")
        return ram.percent, None

    def _check_high_mark(self, can_back_off: bool) -> tuple[str | None, str | None]:
        watch = self.high_mark
        if watch is None:
            return None, None
        check = watch.check(can_back_off=can_back_off, cleanup=self._cleanup)
        self._update_status(**watch.status_fields())
        if check.message:
            self._event("memory_high", check.message)
        if check.action is HighMarkAction.BACKOFF:
            return check.message, None
        return None, check.message if check.action is HighMarkAction.STOP else None
