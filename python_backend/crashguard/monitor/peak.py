"""Peak RSS of this process over an interval, from the kernel's high-water mark (VmHWM).

Writing "5" to /proc/self/clear_refs resets VmHWM to the current RSS (Linux >= 4.0), so the peak between a
reset and a read is exact, costs two small file operations, and needs no sampling thread. Where that is not
possible the tracker falls back to a 5 ms sampling thread.
"""

from __future__ import annotations

import re
import threading

from .processes import own_rss

_HWM = re.compile(rb"VmHWM:\s+(\d+) kB")
# The high-water mark read just before each reset: a reset must not hide a peak from a longer interval
# (a whole run's peak, the test plugin's per-test peak) that encloses a shorter measurement.
_before_resets: list[int] = []


def _read_hwm() -> int | None:
    try:
        with open("/proc/self/status", "rb") as handle:
            match = _HWM.search(handle.read())
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None


def _reset_hwm() -> bool:
    seen = _read_hwm()
    if seen is not None:
        _before_resets.append(seen)
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def _peak_since(resets: int) -> int | None:
    """The process's peak RSS since the `resets`-th reset (exactly, whatever was reset in between)."""
    now = _read_hwm()
    if now is None:
        return None
    return max([now, *_before_resets[resets:]])


def lifetime_peak_rss() -> int | None:
    """The process's peak RSS since it started (VmHWM, through any resets by trackers); None where unknown."""
    return _peak_since(0)


class PeakRssTracker:
    """`start()`, run something, `stop()` -> (RSS at start, peak RSS during the interval) in bytes."""

    def __init__(self, sample_seconds: float = 0.005) -> None:
        self._sample_seconds = sample_seconds
        self._start_rss = 0
        self._peak = 0
        self._resets = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.exact = _read_hwm() is not None and _reset_hwm()

    def start(self) -> None:
        self._start_rss = own_rss()
        if self.exact:
            _reset_hwm()
            self._resets = len(_before_resets)
            return
        self._peak = self._start_rss
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="peak-rss", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(self._sample_seconds):
            self._peak = max(self._peak, own_rss())

    def stop(self) -> tuple[int, int]:
        if self.exact:
            peak = _peak_since(self._resets) or own_rss()
        else:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            peak = max(self._peak, own_rss())
        return self._start_rss, max(peak, self._start_rss)


