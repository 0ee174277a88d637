"""Micro-batch back-off: halve the micro-batch, double the accumulation, keep the effective batch."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..guard.failures import Failure

# The exit code of a run that ran out of memory at the smallest batch, or stopped itself at its memory cgroup's
# high mark (training/run.py lists every exit code).
EXIT_OOM = 3


@dataclass
class BatchPlan:
    effective: int  # samples in the current optimizer step (the trainer's is fixed; a user's loop may vary)
    micro: int  # the most samples per forward/backward (may exceed `effective`: then one pass takes all)

    @property
    def used_micro(self) -> int:
        """Samples per forward/backward in this step."""
        return max(1, min(self.micro, self.effective))

    @property
    def accumulation(self) -> int:
        return math.ceil(self.effective / self.used_micro)

    def chunks(self) -> list[slice]:
        """Slices of the step's samples, one per forward/backward (the last may be smaller)."""
        size = self.used_micro
        return [slice(i, min(i + size, self.effective)) for i in range(0, self.effective, size)]

    def halve(self) -> bool:
        """Halve the micro-batch (as used in this step); False if it is already 1."""
        if self.used_micro <= 1:
            return False
        self.micro = self.used_micro // 2
        return True


class OutOfMemoryAtMinimum(RuntimeError):
    """Out of memory with nothing smaller left to try (micro-batch 1, sliding-window batch 1, or the optimizer's
    lowest-memory update). `weights_intact` is False only when an optimizer update that could not be rolled back
    failed half-way: the weights in memory must then not be checkpointed."""

    def __init__(self, where: str, failure: Failure, weights_intact: bool = True,
                 limit: str = "at the smallest batch") -> None:
        super().__init__(f"out of memory in {where} {limit}: {failure.describe()}")
        self.failure = failure
        self.weights_intact = weights_intact
