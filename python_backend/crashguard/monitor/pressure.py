"""Pressure stall information (PSI): how much of the time tasks were stalled waiting for memory.

Percent of RAM used says how full memory is; PSI says whether that hurts. A machine can be at 60 % and thrashing
(the page cache of a working set evicted and read back again and again, a swap storm), which a percent threshold
never sees. The kernel (4.20+, `psi=1`) keeps, per resource, for the whole system (`/proc/pressure/memory`) and per
cgroup v2 group (`<cgroup>/memory.pressure`):

    some avg10=0.00 avg60=0.00 avg300=0.00 total=12664
    full avg10=0.00 avg60=0.00 avg300=0.00 total=863

"some": at least one task was stalled; "full": every non-idle task was stalled at once (the machine did no work).
`total` is the stalled time in microseconds since boot: two readings give the exact stalled share of the interval
between them, which `PressureWindow` keeps over a sliding window (the kernel's avg10 is an exponential average
that trails a sudden stall by several seconds). Only cheap file reads here: this runs on every sample.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path

SYSTEM_MEMORY_PRESSURE = Path("/proc/pressure/memory")


@dataclass(frozen=True)
class PsiLine:
    avg10: float  # % of the last ~10 s stalled (the kernel's exponential average)
    avg60: float
    avg300: float
    total_us: int  # microseconds stalled since boot (or since the cgroup was created)


@dataclass(frozen=True)
class PsiReading:
    some: PsiLine
    full: PsiLine | None  # absent on kernels before 5.x for the system-wide cpu file; memory always has it


def parse_psi(text: str) -> PsiReading | None:
    """The text of a PSI file; None if it has no valid "some" line."""
    lines: dict[str, PsiLine] = {}
    for raw in text.splitlines():
        kind, _, rest = raw.partition(" ")
        fields: dict[str, str] = {}
        for item in rest.split():
            key, _, value = item.partition("=")
            fields[key] = value
        try:
            lines[kind] = PsiLine(float(fields["avg10"]), float(fields["avg60"]), float(fields["avg300"]),
                                  int(fields["total"]))
        except (KeyError, ValueError):
            continue
    some = lines.get("some")
    return PsiReading(some, lines.get("full")) if some is not None else None


def read_psi(path: Path = SYSTEM_MEMORY_PRESSURE) -> PsiReading | None:
    """A PSI file's reading; None where it does not exist or cannot be read (PSI off: boot with `psi=1`)."""
    try:
        with open(path, "rb") as handle:
            return parse_psi(handle.read(512).decode("ascii", "replace"))
    except OSError:
        return None


def psi_unavailable_reason(path: Path = SYSTEM_MEMORY_PRESSURE) -> str:
    """Why `read_psi(path)` gives nothing, in one line."""
    if not path.exists():
        return (f"{path} does not exist: the kernel has no pressure stall information (Linux 4.20+ with "
                "CONFIG_PSI; some distributions need the boot option psi=1)")
    return f"{path} cannot be read"


@dataclass(frozen=True)
class StallShare:
    """The share of a window during which tasks were stalled on memory, exact from the kernel's counters."""

    some: float  # percent
    full: float | None  # percent; None where the file has no "full" line
    seconds: float  # how long the window the shares are taken over really is
    avg10_some: float  # the kernel's own averages, for display
    avg10_full: float | None


class PressureWindow:
    """Stalled share over the last `window` seconds, from successive `total` counters of one PSI file."""

    def __init__(self, window: float = 10.0) -> None:
        self.window = window
        self._points: deque[tuple[float, int, int | None]] = deque()  # (monotonic time, some_us, full_us)
        self._last: StallShare | None = None

    def add(self, now: float, reading: PsiReading) -> StallShare | None:
        """Record a reading taken at `now` (monotonic seconds); the share over the window, once it spans at least
        half of it (a share over a fraction of a second says nothing about a *sustained* stall)."""
        full_total = reading.full.total_us if reading.full is not None else None
        points = self._points
        if points and now <= points[-1][0]:
            return self._last  # the same instant again (two runs sharing one group): nothing new
        if points and reading.some.total_us < points[-1][1]:
            points.clear()  # a counter that went back: another file (a cgroup re-created under the same name)
        points.append((now, reading.some.total_us, full_total))
        # Keep one point at or before the window's start, so the window is covered whole.
        while len(points) > 2 and now - points[1][0] >= self.window:
            points.popleft()
        self._last = self._share(now, reading, full_total)
        return self._last

    def _share(self, now: float, reading: PsiReading, full_total: int | None) -> StallShare | None:
        first = self._points[0]
        span = now - first[0]
        if span < self.window / 2:
            return None
        some = 100.0 * (reading.some.total_us - first[1]) / (span * 1e6)
        full = None
        if full_total is not None and first[2] is not None:
            full = 100.0 * (full_total - first[2]) / (span * 1e6)
        return StallShare(
            some=round(min(100.0, max(0.0, some)), 2),
            full=None if full is None else round(min(100.0, max(0.0, full)), 2),
            seconds=round(span, 2), avg10_some=reading.some.avg10,
            avg10_full=reading.full.avg10 if reading.full is not None else None,
        )

    def set_window(self, window: float) -> None:
        self.window = window
