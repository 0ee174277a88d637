"""The micro-batch search: the largest size whose measured peak stays under the budget.

Each next size closes only part of the distance to the predicted limit (the peak extrapolated along the steepest
slope measured so far), so memory that grows faster than linearly — it does, as kernels change with the batch —
is caught by a probe that still fits. Near the limit the search confirms it with the next size up: in practice
the only probe over the budget. A probe that runs out of memory counts as over the budget, never as fatal.
"""

from __future__ import annotations

import itertools
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


def _slope(fitting: list[Probe], over: Probe | None) -> float | None:
    """Bytes per sample: the steepest slope between neighbouring measured sizes (an OOM's peak is only a lower
    bound, so it is not used); None until two sizes are measured."""
    points = sorted((p.micro_batch, p.peak) for p in fitting if p.peak is not None)
    if over is not None and over.peak is not None and not over.oom:
        points.append((over.micro_batch, over.peak))
    slopes = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in itertools.pairwise(points)]
    return max(slopes) if slopes else None


def search_micro_batch(measure: Measure, budget: int, start: int = 1, max_micro: int = 64,
                       max_probes: int = 16, approach: float = 0.5) -> SearchResult:
    """`approach`: the share of the predicted distance to the limit that one step may cover."""
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
        top = next(p for p in result.probes if p.micro_batch == best and p.fits)
        assert top.peak is not None
        slope = _slope([p for p in result.probes if p.fits], smallest_over)
        # No growth measured yet (or a small size peaked higher): double. Else close part of the distance.
        step = best
        if slope is not None and slope > 0:
            step = max(1, math.floor(approach * (budget - top.peak) / slope))
        ceiling = min(max_micro, smallest_over.micro_batch - 1 if smallest_over else max_micro)
        if smallest_over is not None and smallest_over.oom:
            ceiling = min(ceiling, (best + smallest_over.micro_batch) // 2)  # an OOM tells no peak: bisect
        probe = run(max(best + 1, min(best + step, ceiling)))
        if probe.fits:
            result.best = probe.micro_batch
        elif smallest_over is None or probe.micro_batch < smallest_over.micro_batch:
            smallest_over = probe
    result.stopped_because = f"probe limit ({max_probes}) reached"
    return result
