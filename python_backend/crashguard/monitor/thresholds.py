"""Memory status levels and how a reading maps to one."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class MemoryStatus(str, Enum):
    NORMAL = "normal"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {MemoryStatus.NORMAL: 0, MemoryStatus.WARNING: 1, MemoryStatus.CRITICAL: 2}


@dataclass(frozen=True)
class Thresholds:
    """Warning and critical levels as fractions of the limit (0.80 = 80 %)."""

    warning: float = 0.80
    critical: float = 0.90

    def __post_init__(self) -> None:
        if not (0.0 < self.warning <= 1.0 and 0.0 < self.critical <= 1.0):
            raise ValueError(f"thresholds must lie in (0, 1]: warning={self.warning}, critical={self.critical}")
        if self.warning > self.critical:
            raise ValueError(f"warning ({self.warning}) must not exceed critical ({self.critical})")

    def classify(self, fraction: float) -> MemoryStatus:
        if fraction >= self.critical:
            return MemoryStatus.CRITICAL
        if fraction >= self.warning:
            return MemoryStatus.WARNING
        return MemoryStatus.NORMAL
