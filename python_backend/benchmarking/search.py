"""The micro-batch search: largest size whose measured peak stays under the budget.

Sizes are chosen by extrapolating the measured peaks (memory grows about linearly with the batch), so the
search walks up to the predicted limit and then confirms it with the next size up; on linear memory that is
the only probe over the budget. A probe that runs out of memory counts as over the budget, never as fatal.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Probe:
    micro_batch: int
    peak: int | None  # bytes; None when it failed before a peak could be read
    oom: bool = False
    steps_per_second: float | None = None
    error: str | None = None
    fits: bool = False  # set by the search: ran without OOM and peak <= budget


@dataclass
class SearchResult:
    budget: int
    best: int | None  # the largest micro-batch that fits, None if even the smallest does not
    probes: list[Probe] = field(default_factory=list)  # in the order they ran
    stopped_because: str = ""

    @property
    def over_budget_probes(self) -> int:
        return sum(1 for p in self.probes if not p.fits)

    def probe(self, micro_batch: int) -> Probe | None:
        return next((p for p in self.probes if p.micro_batch == micro_batch), None)


Measure = Callable[[int], Probe]


def _predict_largest(fitting: list[Probe], over: Probe | None, budget: int) -> int | None:
    """The largest size predicted under the budget from the local slope, or None with a single point."""
    top = max(fitting, key=lambda p: p.micro_batch)
    assert top.peak is not None
    if over is not None and over.peak is not None and not over.oom:  # an OOM's peak is only a lower bound
        slope = (over.peak - top.peak) / (over.micro_batch - top.micro_batch)
    elif len(fitting) >= 2:
        below = max((p for p in fitting if p is not top), key=lambda p: p.micro_batch)
        assert below.peak is not None
        slope = (top.peak - below.peak) / (top.micro_batch - below.micro_batch)
    else:
        return None
    if slope <= 0:
        return top.micro_batch * 2  # no measurable growth yet: keep exploring
    return top.micro_batch + math.floor((budget - top.peak) / slope)


def search_micro_batch(measure: Measure, budget: int, start: int = 1, max_micro: int = 64,
                       max_probes: int = 12) -> SearchResult:
    result = SearchResult(budget=budget, best=None)

    def run(micro: int) -> Probe:
        probe = measure(micro)
        probe.fits = not probe.oom and probe.error is None and probe.peak is not None and probe.peak <= budget
        result.probes.append(probe)
        return probe

    if not run(start).fits:
        result.stopped_because = f"micro-batch {start} does not fit the budget"
        return result
    result.best = start
    smallest_over: Probe | None = None
    while len(result.probes) < max_probes:
        best = result.best
        if best >= max_micro:
            result.stopped_because = f"reached the largest size tried ({max_micro})"
            return result
        if smallest_over is not None and smallest_over.micro_batch == best + 1:
            result.stopped_because = f"micro-batch {best + 1} is over the budget"
            return result
        fitting = [p for p in result.probes if p.fits]
        predicted = _predict_largest(fitting, smallest_over, budget)
        ceiling = min(max_micro, smallest_over.micro_batch - 1 if smallest_over else max_micro, best * 4)
        if predicted is None:
            candidate = min(best * 2, ceiling)
        elif predicted <= best:
            candidate = best + 1  # confirm the limit: expected to be the one probe over the budget
        else:
            candidate = min(predicted, ceiling)
        probe = run(max(candidate, best + 1))
        if probe.fits:
            result.best = probe.micro_batch
        elif smallest_over is None or probe.micro_batch < smallest_over.micro_batch:
            smallest_over = probe
    result.stopped_because = f"probe limit ({max_probes}) reached"
    return result
