"""Memory-safe tests: a pytest plugin that records each test's peak RSS (and VRAM where there is a GPU), cleans
up after a test that grew memory, fails a test over `--memory-budget`, and lists the heaviest tests at the end.

Installing the package registers it as the pytest plugin `crashguard` (an entry point), inert until switched on
with `--memory-guard`, `--memory-budget=SIZE`, or `memory_guard = true` in the pytest ini options. From a
checkout that is not installed, load it with `-p crashguard.pytest_plugin` (not both: pytest refuses one
module registered under two names).

Every pytest run in an environment that has Crash Guard installed loads this module, so it only declares the
options: the measuring plugin (memory_guard.py, which imports psutil and the guards) is imported when switched on.
"""

from __future__ import annotations

import pytest

DEFAULT_CLEANUP_THRESHOLD = "64MB"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("crashguard", "memory-safe tests (Crash Guard)")
    group.addoption("--memory-guard", action="store_true", help="record each test's peak memory and clean up")
    group.addoption("--memory-budget", default=None, metavar="SIZE",
                    help="fail a test whose peak RSS grows by more than SIZE (e.g. 300MB)")
    group.addoption("--memory-top", type=int, default=10, metavar="N", help="heaviest tests listed at the end")
    group.addoption("--memory-cleanup-threshold", default=None, metavar="SIZE",
                    help=f"clean up after a test only when its peak RSS or VRAM, or what it left behind, grew by "
                         f"more than SIZE (default {DEFAULT_CLEANUP_THRESHOLD}; 0 = after every test)")
    parser.addini("memory_guard", "enable the Crash Guard memory plugin", type="bool", default=False)
    parser.addini("memory_budget", "default --memory-budget", default="")
    parser.addini("memory_cleanup_threshold", "default --memory-cleanup-threshold", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "memory_budget(size): a per-test memory budget, e.g. '2GB'")
    budget_text = config.getoption("--memory-budget") or config.getini("memory_budget") or None
    enabled = config.getoption("--memory-guard") or config.getini("memory_guard") or budget_text is not None
    if not enabled or config.pluginmanager.has_plugin("crashguard-memory"):
        return
    from ..util.units import parse_size
    from .memory_guard import MemoryGuardPlugin

    budget = parse_size(budget_text) if budget_text else None
    threshold_text = (config.getoption("--memory-cleanup-threshold") or config.getini("memory_cleanup_threshold")
                      or DEFAULT_CLEANUP_THRESHOLD)
    try:
        threshold = parse_size(threshold_text)
    except ValueError as exc:
        raise pytest.UsageError(f"--memory-cleanup-threshold: {exc}") from None
    config.pluginmanager.register(MemoryGuardPlugin(budget, config.getoption("--memory-top"), threshold),
                                  "crashguard-memory")
