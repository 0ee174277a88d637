"""metrics.jsonl: the recipe's learning record, one JSON object per line (type: step, val, best), flushed per line
so a crash keeps it.

Rewound on resume to the checkpoint's step, so each step and validation appears once, as in an uninterrupted run.
What happened to the run (back-offs, checkpoints, stops, the ending) is not here: that is the run's one event log,
events.jsonl (runs/event_log.py), written by the lifecycle every front door shares and never rewound. (Runs written by
an earlier version kept `event` records here too; the plots still read them.)

A sink (the TensorBoard writer, tensorboard.py) receives every record written here: one place feeds both.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Protocol, TextIO

from ..runs.event_log import open_private_append
from ..util.json_io import atomic_file, json_text


class Sink(Protocol):
    def open(self, purge_after: int | None) -> None: ...
    def write(self, record: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


class MetricsLog:
    def __init__(self, path: Path, sink: Sink | None = None) -> None:
        self.path = path
        self.sink = sink  # opened by rewind() (a training run) or open_sink() (an evaluation)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: TextIO = _open_append(path)

    def write(self, kind: str, **fields: Any) -> None:
        record = {"type": kind, "time": round(time.time(), 3), **fields}
        self._handle.write(json_text(record) + "\n")
        self._handle.flush()
        if self.sink is not None:
            self.sink.write(record)

    def open_sink(self, purge_after: int | None = None) -> None:
        if self.sink is not None:
            self.sink.open(purge_after)

    def rewind(self, step: int, redo: tuple[str, ...] = ()) -> int:
        """Drop records after `step` (from an attempt that died after its last checkpoint); returns the count.
        Records *at* `step` of the kinds in `redo` ("val", "best") are dropped too: the resumed run does them
        again (a validation the checkpoint was written before).

        The kept history then matches the resumed run, which redoes those steps.
        """
        self._handle.close()
        lines = self.path.read_text(encoding="utf-8").splitlines() if self.path.exists() else []
        kept: list[str] = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line torn by a kill
            at = record.get("step") if isinstance(record, dict) else None
            if not isinstance(at, int) or isinstance(at, bool):
                continue  # not a record of ours
            if at < step or (at == step and not {record.get("type"), record.get("event")} & set(redo)):
                kept.append(line)
        with atomic_file(self.path) as out:  # a temp file of its own: never through a planted link
            out.write("".join(f"{line}\n" for line in kept))
        self._handle = _open_append(self.path)
        self.open_sink(purge_after=step)
        return len(lines) - len(kept)

    def close(self) -> None:
        self._handle.close()
        if self.sink is not None:
            self.sink.close()


def _open_append(path: Path) -> TextIO:
    """The file for appending, checked like the event log (no symlink, a single link, ours and private)."""
    return open(open_private_append(path), "a", encoding="utf-8")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records
