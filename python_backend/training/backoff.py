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
    effective: int  # samples per optimizer step: never changes
    micro: int  # samples per forward/backward

    @property
    def accumulation(self) -> int:
        return math.ceil(self.effective / self.micro)

    def chunks(self) -> list[slice]:
        """Slices of the step's samples, one per forward/backward (the last may be smaller)."""
        return [slice(i, min(i + self.micro, self.effective)) for i in range(0, self.effective, self.micro)]

    def halve(self) -> bool:
        """Halve the micro-batch; False if it is already 1."""
        if self.micro <= 1:
            return False
        self.micro = max(1, self.micro // 2)
        return True


class OutOfMemoryAtMinimum(RuntimeError):
    """Out of memory even at micro-batch 1 (or sliding-window batch 1): nothing smaller left to try."""

    def __init__(self, where: str, failure: Failure) -> None:
        super().__init__(f"out of memory in {where} at the smallest batch: {failure.describe()}")
        self.failure = failure
