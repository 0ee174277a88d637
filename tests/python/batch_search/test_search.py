"""The micro-batch search on measured curves: linear, noisy, OOM-ing, and never fitting."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from crashguard.batch_search.search import Probe, search_micro_batch

MIB = 2**20


def _linear(base: int, per_sample: int, oom_above: int | None = None) -> Callable[[int], Probe]:
    def measure(micro: int) -> Probe:
        if oom_above is not None and micro > oom_above:
            return Probe(micro_batch=micro, peak=base, oom=True, error="cpu_oom")
        return Probe(micro_batch=micro, peak=base + micro * per_sample, steps_per_second=1.0)

    return measure


@pytest.mark.parametrize("budget_samples", [1, 2, 3, 7, 10, 17, 31])
def test_linear_memory_finds_the_exact_limit_with_one_probe_over(budget_samples: int) -> None:
    base, per = 500 * MIB, 100 * MIB
    budget = base + budget_samples * per + per // 2
    result = search_micro_batch(_linear(base, per), budget, max_micro=64)
    assert result.best == budget_samples
    assert result.probe(budget_samples + 1) is not None and not result.probe(budget_samples + 1).fits
    assert result.over_budget_probes == 1
    assert len(result.probes) <= 10


def test_oom_is_reported_not_fatal() -> None:
    result = search_micro_batch(_linear(100 * MIB, 10 * MIB, oom_above=5), budget=10_000 * MIB, max_micro=64)
    assert result.best == 5
    assert any(p.oom for p in result.probes)
    assert "micro-batch 6 is over the budget" in result.stopped_because


def test_nothing_fits() -> None:
    result = search_micro_batch(_linear(1000 * MIB, 100 * MIB), budget=900 * MIB)
    assert result.best is None
    assert len(result.probes) == 1 and "does not fit" in result.stopped_because


def test_max_micro_caps_the_search() -> None:
    result = search_micro_batch(_linear(MIB, MIB), budget=10_000 * MIB, max_micro=8)
    assert result.best == 8
    assert all(p.micro_batch <= 8 for p in result.probes)


def test_superlinear_memory_still_converges() -> None:
    def measure(micro: int) -> Probe:
        return Probe(micro_batch=micro, peak=100 * MIB + micro * micro * 10 * MIB)

    budget = 100 * MIB + 12 * 12 * 10 * MIB + MIB
    result = search_micro_batch(measure, budget, max_micro=64)
    assert result.best == 12
    assert not result.probe(13).fits


def test_measured_cpu_curve_needs_one_probe_over() -> None:
    """The shape seen for SegResNet on torch 2.13 CPU: micro-batch 1 peaks above 2, growth is superlinear."""

    def measure(micro: int) -> Probe:
        if micro == 1:
            return Probe(micro_batch=1, peak=657 * MIB)
        mib = 482 + 23.5 * (min(micro, 4) - 2) + 23.5 * max(0, micro - 4) + 1.1 * max(0, micro - 4) ** 2
        return Probe(micro_batch=micro, peak=int(mib * MIB))

    result = search_micro_batch(measure, budget=800 * MIB, max_micro=32)
    assert result.best == 12
    assert result.over_budget_probes == 1
    assert [p.micro_batch for p in result.probes][-1] == 13
