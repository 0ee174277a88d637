"""The RAM budget: the cache gets what the measured working set leaves; peaks survive tracker resets."""

from __future__ import annotations

import subprocess
import sys

import pytest

from crashguard.training.data import plan_cache
from crashguard.training.memory_plan import MARGIN, MemoryPlan, WorkingSet

MIB = 2**20


PEAK_CHILD = """
from crashguard.monitor.peak import PeakRssTracker, lifetime_peak_rss
MIB = 2**20
before = lifetime_peak_rss()
assert before is not None
hog = bytearray(200 * MIB)  # touch 200 MiB, then free them
for i in range(0, len(hog), 4096):
    hog[i] = 1
grown = lifetime_peak_rss()
del hog
tracker = PeakRssTracker()
tracker.start()  # resets the kernel's high-water mark
_, short_peak = tracker.stop()
assert grown is not None and grown >= before + 150 * MIB, (before, grown)
assert short_peak < grown, (short_peak, grown)  # the short interval's own peak
# the whole process's peak is still known (the kernel's RSS counters are per-CPU approximations: ~1 MiB)
assert lifetime_peak_rss() >= grown - 4 * MIB
"""


def test_a_short_measurement_does_not_hide_an_earlier_peak() -> None:
    # In a fresh process: this one's peak may already be far above anything the test could touch.
    result = subprocess.run([sys.executable, "-c", PEAK_CHILD], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]


def test_working_set_is_the_highest_phase_plus_margin() -> None:
    # validation of an uncached case loads it first: 1000 + 400 < the step's 1500
    ws = WorkingSet(baseline=500 * MIB, load=900 * MIB, train=1500 * MIB, validate=1000 * MIB, item_bytes=60 * MIB)
    assert ws.peak(load_threads=1, concurrent_loads=0) == int(1500 * MIB + MARGIN * 1000 * MIB)
    # two loader threads loading uncached cases during a step: the step and both loads at once
    assert ws.peak(load_threads=2, concurrent_loads=2) == int(2300 * MIB + MARGIN * 1800 * MIB)
    plan = MemoryPlan(budget=3000 * MIB, working_set=ws, working_peak=ws.peak(1, 0))
    assert plan.cache_bytes == 3000 * MIB - ws.peak(1, 0)
    assert "cache" in plan.describe() and plan.as_fields()["cache_budget"] == plan.cache_bytes
    failed = MemoryPlan(3000 * MIB, WorkingSet(1, 1, 1, 1, 1, failed="OutOfMemoryError"), 10)
    assert failed.cache_bytes == 0


def test_cache_plan_fills_the_given_budget() -> None:
    plan = plan_cache("auto", item_bytes=60 * MIB, n_train=9, n_val=3, headroom_bytes=0, budget_bytes=500 * MIB)
    assert plan.cached_items == 8 and plan.train_rate == pytest.approx(8 / 9) and plan.val_rate == 0.0
    assert "measured working set" in plan.describe()
