"""When the sampling loop takes its next sample: as earlyoom does, in headroom / a worst-case fill rate.

A fixed interval sees a spike late: at 1 s, RAM filling at 1 GB/s is ~1 GB further than the last sample said before
anything can react. So the delay to the next sample is the time the RAM headroom lasts at the fastest fill that is
plausible now, clamped to [MIN_DELAY, the configured interval]: a quiet machine far from its limit samples at the
configured interval (it costs what it cost), and near the limit a spike is seen within MIN_DELAY.

- Headroom: bytes to the next point where something must happen: the critical threshold (the ladder acts there),
  and once past it the limit itself (the kernel's OOM killer, at the cgroup's limit or physical RAM).
- Fill rate: the fastest rise of used RAM between two samples of the last 30 s (forecast.History), and at least
  WORST_CASE_FILL = 1 GiB/s: the spike of issue 22 (from 90 % of 24 GB to the kernel's limit in ~2.4 s), and what
  one Python process first-touching fresh pages sustains on this project's 2-core machines (the drill's hog). A
  machine that has shown a faster rise in the last 30 s is sampled for that rate instead.

RAM only: VRAM running out raises an error in the process that asked (the guarded step backs off), it does not
bring the kernel's OOM killer; and a training run keeps its GPU near full on purpose (PyTorch's caching allocator),
so VRAM headroom would keep sampling fast while nothing is wrong.
"""

from __future__ import annotations

MIN_DELAY = 0.1  # s: what a spike waits for at most to be seen, near the limit (earlyoom's minimum too)
WORST_CASE_FILL = float(2**30)  # bytes/s: the fill rate assumed when nothing faster was seen recently


def headroom(used: float, total: float, critical_percent: float) -> float:
    """Bytes of RAM until the critical threshold, or, at or above it, until the limit (`total`)."""
    critical = total * critical_percent / 100.0
    return max(0.0, (critical if used < critical else total) - used)


def next_delay(headroom_bytes: float | None, fastest_fill: float | None, interval: float) -> float:
    """Seconds until the next sample: `headroom_bytes` at the larger of `fastest_fill` (bytes/s, recently seen)
    and WORST_CASE_FILL, within [MIN_DELAY, interval]. No reading yet (None): the configured interval."""
    if headroom_bytes is None:
        return interval
    rate = max(WORST_CASE_FILL, fastest_fill or 0.0)
    return min(interval, max(MIN_DELAY, headroom_bytes / rate))
