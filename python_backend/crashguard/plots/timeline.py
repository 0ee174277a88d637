"""The memory timeline: RAM and each GPU over time, the thresholds, and training events as markers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .figure import png_figure

_EVENT_COLOURS = {"oom": "tab:red", "cleanup": "tab:green", "checkpoint": "tab:blue"}


@dataclass(frozen=True)
class MemoryPoint:
    time: float  # epoch seconds
    ram_percent: float
    gpu_percents: dict[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TimelineEvent:
    time: float
    kind: str  # "oom", "cleanup", "checkpoint", or anything else (drawn grey)
    label: str


def plot_memory_timeline(points: Sequence[MemoryPoint], out: str | Path, events: Sequence[TimelineEvent] = (),
                         warning_percent: float = 80, critical_percent: float = 90,
                         width_px: int = 1000, height_px: int = 400) -> Path:
    if not points:
        raise ValueError("no memory samples to plot")
    start = points[0].time
    xs = [p.time - start for p in points]
    with png_figure(out, width_px, height_px) as (fig, ax):
        ax.plot(xs, [p.ram_percent for p in points], label="RAM", color="tab:purple", linewidth=1.5)
        for gpu in sorted({g for p in points for g in p.gpu_percents}):
            series = [(x, p.gpu_percents[gpu]) for x, p in zip(xs, points, strict=True) if gpu in p.gpu_percents]
            ax.plot([s[0] for s in series], [s[1] for s in series], label=f"GPU {gpu}", linewidth=1.2)
        ax.axhline(warning_percent, color="orange", linestyle="--", linewidth=1, label=f"warning {warning_percent:g}%")
        ax.axhline(critical_percent, color="red", linestyle="--", linewidth=1, label=f"critical {critical_percent:g}%")
        for event in events:
            ax.axvline(event.time - start, color=_EVENT_COLOURS.get(event.kind, "grey"), alpha=0.6, linewidth=1)
            ax.annotate(event.label, (event.time - start, 98), rotation=90, fontsize=7, va="top", ha="right")
        ax.set_ylim(0, 100)
        ax.set_xlabel("seconds")
        ax.set_ylabel("% of limit")
        ax.set_title("Memory")
        ax.legend(loc="lower right", fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
    return Path(out)
