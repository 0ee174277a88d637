"""Atomic files: a reader sees the old content or the new, never half of either."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Literal


@contextmanager
def atomic_file(path: Path, mode: Literal["w", "wb"] = "w", durable: bool = False) -> Iterator[IO[Any]]:
    """Write to a temp file in the same folder, then rename over `path` (only if the block succeeded).

    `durable` adds an fsync of the file and the folder, for data that must survive power loss (checkpoints);
    status files skip it because they are rewritten every second and a crash of the process alone never tears a
    rename.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself must reach the disk
        finally:
            os.close(dir_fd)


def write_json_atomic(path: Path, data: Any, durable: bool = False, indent: int | None = None) -> None:
    with atomic_file(path, "w", durable) as handle:
        if indent is None:
            json.dump(data, handle, separators=(",", ":"))
        else:
            json.dump(data, handle, indent=indent)
            handle.write("\n")


def read_json(path: Path) -> Any | None:
    """The parsed file, or None if it is missing or not valid JSON (e.g. a foreign file)."""
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None
