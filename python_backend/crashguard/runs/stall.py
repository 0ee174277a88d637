"""Is a live run hung? A trainer stuck in a deadlocked DataLoader or waiting on a dead NCCL peer is alive and says
"running" forever; what gives it away is a status file that stops changing.

The hook rewrites status.json at most once per write interval and only when the trainer calls it (at every step
boundary), so a healthy run's status is at most about one step old. A run counts as hung when its status has not
been updated for STEP_FACTOR x its own typical step time (`step_seconds`, published by the hook), and never sooner
than a floor: the first steps (no typical time yet), and phases without step boundaries (validation, a checkpoint),
are covered by the floor only.
"""

from __future__ import annotations

import math

HUNG = "hung"  # RunInfo.state of a live run whose status stopped changing; derived, never written to a file
STEP_FACTOR = 10.0
DEFAULT_FLOOR_SECONDS = 120.0


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None  # a status file is a claim: a string or NaN here counts as absent
    return float(value)


def typical_step(step_seconds: object) -> float | None:
    """The run's published step time, if it is a usable number (positive and finite)."""
    value = _finite(step_seconds)
    return value if value is not None and value > 0 else None


def hung_after(step_seconds: object, floor: float = DEFAULT_FLOOR_SECONDS) -> float:
    """Seconds without a status update after which this run counts as hung."""
    typical = typical_step(step_seconds)
    return max(floor, STEP_FACTOR * typical) if typical is not None else floor


def stalled_seconds(updated: object, now: float) -> float | None:
    """Seconds since the status was last written; None when the file names no usable time. A time in the future
    (a clock step, or a forged file) counts as just written."""
    value = _finite(updated)
    if value is None or value <= 0:
        return None
    return max(0.0, now - value)
