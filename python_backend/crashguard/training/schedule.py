"""The learning-rate schedule: a pure function of the optimizer step's index.

`lr_at(step, ...)` is the learning rate of the optimizer step that follows `step` completed steps (0-based). The
trainer writes it into the optimizer's param groups before every step. There is no scheduler object and so no
scheduler state: a resumed run (whose step counter comes from the checkpoint) and an OOM retry of the same step
(which does not advance the counter) get exactly the rate the uninterrupted run had, by construction.

- warm-up: a linear ramp over the first `warmup_steps` steps, from base/warmup_steps up to base (never 0: the
  first step learns something);
- then "constant" (base), "cosine" (half a cosine from base down to `min_lr`) or "poly" (nnU-Net's
  (1 - t)^0.9 from base down to `min_lr`), t running from 0 at the end of the warm-up to 1 at `total_steps`.
  As in nnU-Net the last step's t is (n-1)/n, so it still learns; from `total_steps` on the rate is `min_lr`.
"""

from __future__ import annotations

import math
from typing import Literal

LrSchedule = Literal["constant", "cosine", "poly"]
POLY_EXPONENT = 0.9  # nnU-Net's


def lr_at(step: int, *, base_lr: float, total_steps: int, schedule: LrSchedule = "constant",
          warmup_steps: int = 0, min_lr: float = 0.0) -> float:
    """The learning rate of optimizer step `step` (0-based) of a run of `total_steps` steps."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    span = total_steps - warmup_steps
    if span <= 0 or step >= total_steps:
        return min_lr if span > 0 else base_lr  # a warm-up as long as the run leaves nothing to decay
    t = (step - warmup_steps) / span
    if schedule == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * t))
    elif schedule == "poly":
        factor = (1.0 - t) ** POLY_EXPONENT
    else:
        raise ValueError(f"unknown lr_schedule {schedule!r}")
    return min_lr + (base_lr - min_lr) * factor
