"""metrics.jsonl: one JSON object per line (type: step, val, event), flushed per line so a crash keeps it.

A sink (the TensorBoard writer, tensorboard.py) receives every record written here: one place feeds both.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Protocol, TextIO

from ..util.json_io import json_text


class Sink(Protocol):
    def open(self, purge_after: int | None) -> None: ...
    def write(self, record: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


class MetricsLog:
    def __init__(self, path: Path, sink: Sink | None = None) -> None:
        self.path = path
        self.sink = sink  # opened by rewind() (a training run) or open_sink() (an evaluation)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: TextIO = path.open("a", encoding="utf-8")

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
        Records *at* `step` of the kinds in `redo` ("val", or an event's name such as "best") are dropped too:
        the resumed run does them again (a validation the checkpoint was written before).

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
            if not isinstance(record, dict):
                continue
            at = int(record.get("step", 0))
            if at < step or (at == step and not {record.get("type"), record.get("event")} & set(redo)):
                kept.append(line)
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
        os.replace(tmp, self.path)
        self._handle = self.path.open("a", encoding="utf-8")
        self.open_sink(purge_after=step)
        return len(lines) - len(kept)

    def close(self) -> None:
        self._handle.close()
        if self.sink is not None:
            self.sink.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records
