"""Checkpoints that survive crashes: atomic writes, the last K kept, weights-only loading.

A checkpoint is written to a temp file in the same folder, fsynced, then renamed over its final name, so a
kill at any moment leaves either no new file or a complete one; the previous checkpoints are untouched.
Loading uses torch.load(weights_only=True): a crafted pickle cannot run code, it is refused.
"""

from __future__ import annotations

import logging
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..util.json_io import atomic_file

log = logging.getLogger(__name__)
_NAME = re.compile(r"^step-(\d{8})\.pt$")
BEST_NAME = "best.pt"  # the best validated model: not a step-*.pt, so pruning never touches it


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used (missing, truncated, or not a weights-only file)."""


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}.pt"


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoint files, oldest first (temp files of interrupted writes are not listed)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if _NAME.match(p.name))


def write_checkpoint(final: Path, state: dict[str, Any]) -> Path:
    with atomic_file(final, "wb", durable=True) as handle:
        torch.save(state, handle)
    return final


def save_checkpoint(directory: Path, state: dict[str, Any], step: int, keep: int) -> Path:
    final = write_checkpoint(directory / checkpoint_name(step), state)
    prune(directory, keep)
    return final


def save_best(directory: Path, state: dict[str, Any]) -> Path:
    """Write `best.pt` atomically; only its own writer (the main thread of rank 0) clears its killed temp files."""
    if directory.is_dir():
        for stale in directory.glob(f".{BEST_NAME}.*.tmp"):
            stale.unlink(missing_ok=True)
    return write_checkpoint(directory / BEST_NAME, state)


def prune(directory: Path, keep: int) -> None:
    for old in list_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)
    for stale in directory.glob(".step-*.tmp"):  # left by a write that was killed
        stale.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path}: refused, not a weights-only checkpoint "
                              f"({str(exc).splitlines()[0][:160]})") from None
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") \
            from None
    if not isinstance(state, dict) or "model" not in state or "step" not in state:
        raise CheckpointError(f"{path}: not a Crash Guard training checkpoint")
    return state


def latest_intact(directory: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that loads; damaged ones are skipped with a warning."""
    for path in reversed(list_checkpoints(directory)):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as exc:
            log.warning("skipping checkpoint: %s", exc)
    return None


# -- RNG states, in types weights_only loading accepts ------------------------------------------------
def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state(legacy=True)
    assert isinstance(np_state, tuple)  # the legacy form: (name, keys, pos, has_gauss, cached_gaussian)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
