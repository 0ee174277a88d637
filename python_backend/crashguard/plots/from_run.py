"""All plots for one training run, from its metrics.jsonl (steps with RAM %, validations, events)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .curves import plot_training_curves
from .overlay import plot_segmentation_overlay
from .timeline import MemoryPoint, TimelineEvent, plot_memory_timeline

REGIONS = ("TC", "WT", "ET")


def _records(metrics: Path) -> Iterable[dict[str, Any]]:
    with metrics.open(encoding="utf-8") as handle:  # line by line: a long run's log is never loaded whole
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line torn by a kill
            if isinstance(record, dict):
                yield record


def _event_kind(record: dict[str, Any]) -> str:
    text = f"{record.get('event', '')}".lower()
    for kind in ("oom", "cleanup", "checkpoint"):
        if kind in text:
            return kind
    return "other"


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None, warning_percent: float = 80,
             critical_percent: float = 90, case: tuple[Path, Path, Path | None] | None = None) -> list[Path]:
    """Writes memory.png and curves.png (and overlay.png for `case` = (image, label, prediction)) into `out_dir`
    (default <run>/plots). Returns the files written."""
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        raise FileNotFoundError(f"{metrics}: no metrics for this run")
    out = Path(out_dir) if out_dir is not None else run_dir / "plots"
    points: list[MemoryPoint] = []
    events: list[TimelineEvent] = []
    losses: list[tuple[int, float]] = []
    dice: dict[str, list[tuple[int, float]]] = {region: [] for region in REGIONS}
    for record in _records(metrics):
        kind, time = record.get("type"), float(record.get("time", 0.0))
        if kind == "step":
            if record.get("ram_percent") is not None:
                points.append(MemoryPoint(time, float(record["ram_percent"])))
            if record.get("loss") is not None:
                losses.append((int(record["step"]), float(record["loss"])))
        elif kind == "val" and not record.get("evaluation"):  # an evaluation of a checkpoint is no curve point
            for region in REGIONS:
                value = record.get(f"dice_{region.lower()}")
                if value is not None:
                    dice[region].append((int(record.get("epoch", 0)), float(value)))
        elif kind == "event":
            text = str(record.get("message") or record.get("event") or "event")
            events.append(TimelineEvent(time, _event_kind(record), text[:40]))
    written = []
    if points:
        written.append(plot_memory_timeline(points, out / "memory.png", events, warning_percent, critical_percent))
    if losses or any(dice.values()):
        written.append(plot_training_curves(losses, dice, out / "curves.png"))
    if case is not None:
        image, label, prediction = case
        written.append(plot_segmentation_overlay(image, label, out / "overlay.png", prediction_path=prediction))
    return written
