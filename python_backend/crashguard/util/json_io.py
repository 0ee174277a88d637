"""JSON that is always JSON, written atomically: the ground floor every layer writes files and frames with.

Everything Crash Guard writes goes through `json_text`: non-finite numbers become null (strict parsers, the
extension's among them, reject NaN and Infinity). `strict_loads` is its reading twin.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Literal


# -- JSON that is always JSON ------------------------------------------------------------------------------------
def finite(value: Any) -> Any:
    """`value` with every non-finite float (NaN, +-Infinity) replaced by None, inside dicts, lists and tuples."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def json_text(data: Any, indent: int | None = None, sort_keys: bool = False) -> str:
    """Strict JSON for anything Crash Guard writes: non-finite numbers as null (allow_nan=False would raise on a
    NaN that slipped past `finite`, never write it)."""
    if indent is None:
        return json.dumps(finite(data), separators=(",", ":"), allow_nan=False, sort_keys=sort_keys)
    return json.dumps(finite(data), indent=indent, allow_nan=False, sort_keys=sort_keys)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses to inf
        raise ValueError(f"{text[:20]} is not a finite number")
    return value


# An integer of more digits than this is refused before it is converted (int("9" * 4000) costs, and nothing Crash
# Guard reads holds one): 2**64 - 1 has 20 digits.
_MAX_INT_DIGITS = 20
MAX_JSON_INT = 2**64 - 1  # the largest integer a checked read accepts (inode numbers reach it); the wire's is 2**53-1


def _bounded_int(text: str) -> int:
    digits = text.lstrip("-")
    if len(digits) > _MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(digits)} digits is out of range")
    value = int(text)
    if abs(value) > MAX_JSON_INT:
        raise ValueError(f"{text} is out of range")
    return value


def strict_loads(text: str | bytes) -> Any:
    """json.loads that refuses NaN, Infinity, -Infinity, numbers that overflow to infinity, and integers beyond
    +-(2**64 - 1) (a 300-digit integer would overflow a float field, and no reader holds it exactly)."""
    return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_bounded_int)


# -- atomic writes -----------------------------------------------------------------------------------------------
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
        handle: IO[Any] = os.fdopen(fd, "wb") if mode == "wb" else os.fdopen(fd, "w", encoding="utf-8")
        with handle:
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
    text = json_text(data, indent)
    with atomic_file(path, "w", durable) as handle:
        handle.write(text)
        if indent is not None:
            handle.write("\n")
