"""The measuring half of the memory plugin, loaded only when it is switched on (see __init__.py).

Budgets apply to a test's growth: its peak RSS minus its RSS when it started.

What it costs: the peak is the kernel's exact high-water mark (two small /proc operations per test). A full
cleanup (gc of every generation, CUDA's cache, malloc_trim) costs tens of milliseconds in a process holding
many objects, so it runs only after a test whose peak, or what it left behind, grew past
`--memory-cleanup-threshold` (default 64 MiB; 0 = after every test). A lighter test's garbage is left to
Python's own collector: it is never charged to the next test, whose growth starts from its own RSS.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import pytest

from ..guard.cleanup import emergency_cleanup
from ..monitor.peak import PeakRssTracker
from ..monitor.processes import own_rss
from ..util.units import human_bytes, parse_size
from . import DEFAULT_CLEANUP_THRESHOLD


@dataclass
class TestMemory:
    nodeid: str
    start_rss: int
    peak_rss: int
    peak_vram: int | None

    @property
    def growth(self) -> int:
        return self.peak_rss - self.start_rss


def _cuda() -> Any:
    """torch.cuda when the tests already use CUDA, else None (torch is never imported or initialised here, so
    neither is its type)."""
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            return torch.cuda
    except Exception:  # a test that broke its CUDA context must not break the next test's bookkeeping
        pass
    return None


def _vram_peak_reset() -> int | None:
    """Reset the allocator's peak; return the VRAM reserved now (None without CUDA)."""
    cuda = _cuda()
    if cuda is None:
        return None
    try:
        cuda.reset_peak_memory_stats()
        return int(cuda.memory_reserved())
    except Exception:
        return None


def _vram_peak() -> int | None:
    cuda = _cuda()
    try:
        return int(cuda.max_memory_allocated()) if cuda is not None else None
    except Exception:
        return None


def _vram_reserved() -> int | None:
    cuda = _cuda()
    try:
        return int(cuda.memory_reserved()) if cuda is not None else None
    except Exception:
        return None


class MemoryGuardPlugin:
    def __init__(self, budget: int | None, top: int, cleanup_threshold: int = parse_size(DEFAULT_CLEANUP_THRESHOLD)
                 ) -> None:
        self.budget = budget
        self.top = top
        self.cleanup_threshold = cleanup_threshold
        self.cleanups = 0
        self.results: list[TestMemory] = []
        self._tracker = PeakRssTracker()
        self._vram_start: int | None = None
        self._last: TestMemory | None = None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        marker = item.get_closest_marker("memory_budget")
        budget = parse_size(marker.args[0]) if marker else self.budget
        self._vram_start = _vram_peak_reset()
        self._tracker.start()
        try:
            result = yield
        finally:
            start, peak = self._tracker.stop()
            record = TestMemory(item.nodeid, start, peak, _vram_peak())
            self.results.append(record)
            self._last = record
        if budget is not None and record.growth > budget:
            pytest.fail(f"memory budget exceeded: peak RSS grew by {human_bytes(record.growth)} "
                        f"(budget {human_bytes(budget)}; {human_bytes(record.start_rss)} -> "
                        f"{human_bytes(record.peak_rss)})", pytrace=False)
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, None, None]:
        result = yield  # the test's fixtures are torn down first: what they free is not "left behind"
        record, self._last = self._last, None
        if record is not None and record.nodeid == item.nodeid and self._grew(record):
            emergency_cleanup()  # return what the test freed (heap, CUDA cache) before the next one starts
            self.cleanups += 1
        return result

    def _grew(self, record: TestMemory) -> bool:
        """Whether the test's peak, or what it left behind, grew past the threshold (RSS or reserved VRAM)."""
        limit = self.cleanup_threshold
        if limit <= 0 or record.growth > limit or own_rss() - record.start_rss > limit:
            return True
        # The caching allocator keeps what it reserved until emptied: reserved growth covers the peak and the rest.
        vram = _vram_reserved()
        return vram is not None and self._vram_start is not None and vram - self._vram_start > limit

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.results:
            return
        heaviest = sorted(self.results, key=lambda r: r.growth, reverse=True)[: self.top]
        terminalreporter.section("heaviest tests (peak RSS growth)")
        for record in heaviest:
            vram = f"  VRAM peak {human_bytes(record.peak_vram)}" if record.peak_vram is not None else ""
            terminalreporter.write_line(f"{human_bytes(record.growth):>10}  peak {human_bytes(record.peak_rss):>10}"
                                        f"{vram}  {record.nodeid}")
        method = "VmHWM" if self._tracker.exact else "5 ms sampling"
        budget = f", budget {human_bytes(self.budget)}" if self.budget else ""
        threshold = (f"over {human_bytes(self.cleanup_threshold)} of growth" if self.cleanup_threshold > 0
                     else "after every test")
        terminalreporter.write_line(f"({len(self.results)} tests measured by {method}{budget}; cleanup "
                                    f"{threshold}: {self.cleanups} run{'s' if self.cleanups != 1 else ''})")
