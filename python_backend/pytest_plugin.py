"""Memory-safe tests: a pytest plugin that records each test's peak RSS (and VRAM where there is a GPU), cleans
up between tests, fails a test over `--memory-budget`, and lists the heaviest tests at the end.

Installing the package registers it as the pytest plugin `crashguard` (an entry point), inert until switched on
with `--memory-guard`, `--memory-budget=SIZE`, or `memory_guard = true` in the pytest ini options. From a
checkout that is not installed, load it with `-p python_backend.pytest_plugin` (not both: pytest refuses one
module registered under two names).
Budgets apply to a test's growth: its peak RSS minus its RSS when it started.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from dataclasses import dataclass

import pytest

from .cli.units import human_bytes, parse_size
from .guard.cleanup import emergency_cleanup
from .monitor.peak import PeakRssTracker


@dataclass
class TestMemory:
    nodeid: str
    start_rss: int
    peak_rss: int
    peak_vram: int | None

    @property
    def growth(self) -> int:
        return self.peak_rss - self.start_rss


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("crashguard", "memory-safe tests (Crash Guard)")
    group.addoption("--memory-guard", action="store_true", help="record each test's peak memory and clean up")
    group.addoption("--memory-budget", default=None, metavar="SIZE",
                    help="fail a test whose peak RSS grows by more than SIZE (e.g. 300MB)")
    group.addoption("--memory-top", type=int, default=10, metavar="N", help="heaviest tests listed at the end")
    parser.addini("memory_guard", "enable the Crash Guard memory plugin", type="bool", default=False)
    parser.addini("memory_budget", "default --memory-budget", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "memory_budget(size): a per-test memory budget, e.g. '2GB'")
    budget_text = config.getoption("--memory-budget") or config.getini("memory_budget") or None
    enabled = config.getoption("--memory-guard") or config.getini("memory_guard") or budget_text is not None
    if enabled and not config.pluginmanager.has_plugin("crashguard-memory"):
        budget = parse_size(budget_text) if budget_text else None
        config.pluginmanager.register(MemoryGuardPlugin(budget, config.getoption("--memory-top")),
                                      "crashguard-memory")


def _vram_peak_reset() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()


def _vram_peak() -> int | None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        return int(torch.cuda.max_memory_allocated())
    return None


class MemoryGuardPlugin:
    def __init__(self, budget: int | None, top: int) -> None:
        self.budget = budget
        self.top = top
        self.results: list[TestMemory] = []
        self._tracker = PeakRssTracker()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        marker = item.get_closest_marker("memory_budget")
        budget = parse_size(marker.args[0]) if marker else self.budget
        _vram_peak_reset()
        self._tracker.start()
        try:
            result = yield
        finally:
            start, peak = self._tracker.stop()
            record = TestMemory(item.nodeid, start, peak, _vram_peak())
            self.results.append(record)
        if budget is not None and record.growth > budget:
            pytest.fail(f"memory budget exceeded: peak RSS grew by {human_bytes(record.growth)} "
                        f"(budget {human_bytes(budget)}; {human_bytes(record.start_rss)} -> "
                        f"{human_bytes(record.peak_rss)})", pytrace=False)
        return result

    def pytest_runtest_teardown(self, item: pytest.Item) -> None:
        emergency_cleanup()  # memory a test left behind should not be charged to the next one

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
        terminalreporter.write_line(f"({len(self.results)} tests measured by {method}{budget})")
