"""metrics.jsonl: one JSON object per line (type: step, val, event), flushed per line so a crash keeps it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, TextIO

from ..runs.files import json_text


class MetricsLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: TextIO = path.open("a", encoding="utf-8")

    def write(self, kind: str, **fields: Any) -> None:
        self._handle.write(json_text({"type": kind, "time": round(time.time(), 3), **fields}) + "\n")
        self._handle.flush()

    def rewind(self, step: int) -> int:
        """Drop records after `step` (from an attempt that died after its last checkpoint); returns the count.

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
            if isinstance(record, dict) and int(record.get("step", 0)) <= step:
                kept.append(line)
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
        os.replace(tmp, self.path)
        self._handle = self.path.open("a", encoding="utf-8")
        return len(lines) - len(kept)

    def close(self) -> None:
        self._handle.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records
