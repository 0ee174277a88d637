"""All plots for one training run: steps (with RAM %) and validations from its metrics.jsonl, the timeline's events
from its event log, events.jsonl (runs/event_log.py; a run written by an earlier version kept them in
metrics.jsonl)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..runs.event_log import EVENTS_FILE, read_events
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


def _number(value: Any) -> float | None:
    """A finite number of a record, or None (the files are a run folder's: any type may stand there)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _timeline_event(record: dict[str, Any]) -> TimelineEvent | None:
    time = _number(record.get("time"))
    if time is None:
        return None
    label = record.get("message") or record.get("event") or "event"
    return TimelineEvent(time, _event_kind(record), str(label)[:40])


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
    found: list[TimelineEvent | None] = []
    losses: list[tuple[int, float]] = []
    dice: dict[str, list[tuple[int, float]]] = {region: [] for region in REGIONS}
    for record in _records(metrics):
        kind, time, step = record.get("type"), _number(record.get("time")), _number(record.get("step"))
        if kind == "step" and time is not None and step is not None:
            ram, loss = _number(record.get("ram_percent")), _number(record.get("loss"))
            if ram is not None:
                points.append(MemoryPoint(time, ram))
            if loss is not None:
                losses.append((int(step), loss))
        elif kind == "val" and not record.get("evaluation"):  # an evaluation of a checkpoint is no curve point
            epoch = _number(record.get("epoch")) or 0.0
            for region in REGIONS:
                value = _number(record.get(f"dice_{region.lower()}"))
                if value is not None:
                    dice[region].append((int(epoch), value))
        elif kind == "event":  # a run from before the event log
            found.append(_timeline_event(record))
    found += [_timeline_event(record) for record in read_events(run_dir / EVENTS_FILE)]
    events = sorted((e for e in found if e is not None), key=lambda e: e.time)
    written = []
    if points:
        written.append(plot_memory_timeline(points, out / "memory.png", events, warning_percent, critical_percent))
    if losses or any(dice.values()):
        written.append(plot_training_curves(losses, dice, out / "curves.png"))
    if case is not None:
        image, label, prediction = case
        written.append(plot_segmentation_overlay(image, label, out / "overlay.png", prediction_path=prediction))
    return written
