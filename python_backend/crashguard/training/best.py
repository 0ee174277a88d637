"""The best validation so far and the early-stopping count: pure state, saved in every checkpoint.

`observe` takes each validation's mean Dice in order. The best (what `best.pt` holds) is replaced by any strictly
higher mean; the early-stopping count resets only when a mean beats the best before it by more than `min_delta`
(PyTorch Lightning's and Keras's rule), so a crawl of tiny gains still runs out of patience. A validation
without a Dice (no region present in any case) neither improves nor counts. The state is plain numbers, so a
checkpoint loaded weights-only restores it exactly and a resumed run continues the same count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class BestTracker:
    patience: int | None = None  # validations without improvement that end the run; None: never
    min_delta: float = 0.0
    metric: float | None = None  # the best mean Dice so far
    step: int = -1  # the step it was measured at
    stale: int = 0  # validations since the last improvement by more than min_delta

    def observe(self, metric: float | None, step: int) -> bool:
        """Count one validation; True when it is the new best (strictly higher than any before)."""
        if metric is None:
            return False
        if self.metric is None or metric > self.metric + self.min_delta:
            self.stale = 0
        else:
            self.stale += 1
        if self.metric is None or metric > self.metric:
            self.metric, self.step = metric, step
            return True
        return False

    @property
    def exhausted(self) -> bool:
        """The patience is used up: the run should stop."""
        return self.patience is not None and self.stale >= self.patience

    def describe_stop(self, step: int) -> str:
        return (f"early stop at step {step}: no improvement in {self.stale} validations, best {self.metric} "
                f"at step {self.step}")

    def state(self) -> dict[str, Any]:
        return {"metric": self.metric, "step": self.step, "stale": self.stale}

    def load(self, state: dict[str, Any] | None) -> None:
        """Restore from a checkpoint's `best` (absent in checkpoints older than this field: a fresh count)."""
        if not state:
            return
        metric = state.get("metric")
        self.metric = None if metric is None else float(metric)
        self.step = int(state.get("step", -1))
        self.stale = int(state.get("stale", 0))
