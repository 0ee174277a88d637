"""Checkpoints that survive crashes: atomic writes, the last K kept, weights-only loading.

A checkpoint is written to a temp file in the same folder, fsynced, then renamed over its final name, so a
kill at any moment leaves either no new file or a complete one; the previous checkpoints are untouched. A
checkpoint is `step-NNNNNNNN.pt`, or `.ckpt` when Lightning's `trainer` wrote it; both are listed, kept and pruned
alike. Loading uses torch.load(weights_only=True): a crafted pickle cannot run code, it is refused.

`snapshot` copies a state (model, optimizer, ...) off the GPU and away from the live tensors, so a background
thread can write it while training changes the originals (step/async_writer.py).
"""

from __future__ import annotations

import copy
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
_NAME = re.compile(r"^step-(\d{8})\.(pt|ckpt)$")
_TEMP = re.compile(r"^\.step-(\d{8})\.")  # atomic_file's temp file of a checkpoint being written
BEST_NAME = "best.pt"  # the best validated model: not a step-*.pt, so pruning never touches it


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used (missing, truncated, or not a weights-only file)."""


def checkpoint_name(step: int, suffix: str = ".pt") -> str:
    return f"step-{step:08d}{suffix}"


def checkpoint_step(path: Path) -> int | None:
    """The step a checkpoint file's name says it holds, or None for another name."""
    match = _NAME.match(path.name)
    return int(match.group(1)) if match else None


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoint files (.pt and .ckpt), oldest first (temp files of interrupted writes are not
    listed)."""
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.iterdir() if _NAME.match(p.name)),
                  key=lambda p: (checkpoint_step(p), p.name))


def write_checkpoint(final: Path, state: dict[str, Any]) -> Path:
    with atomic_file(final, "wb", durable=True) as handle:
        torch.save(state, handle)
    return final


def save_checkpoint(directory: Path, state: dict[str, Any], step: int, keep: int, suffix: str = ".pt") -> Path:
    final = write_checkpoint(directory / checkpoint_name(step, suffix), state)
    prune(directory, keep)
    return final


def snapshot(state: Any) -> tuple[Any, int]:
    """A copy of `state` that shares no tensor with it: every tensor cloned into CPU memory (off the GPU), the
    containers rebuilt, anything else deep-copied. Returns it and the bytes its tensors hold (what the copy costs
    in RAM until it is written)."""
    total = 0

    def copy_of(value: Any) -> Any:
        nonlocal total
        if isinstance(value, torch.Tensor):
            copied = value.detach().to("cpu", copy=True)
            total += copied.numel() * copied.element_size()
            return copied
        if isinstance(value, dict):
            items = {k: copy_of(v) for k, v in value.items()}
            if type(value) is dict:
                return items
            try:  # the same type with the same attributes (a state_dict's OrderedDict keeps its _metadata)
                same = copy.copy(value)
                same.clear()
                same.update(items)
                return same
            except Exception:
                return items
        if isinstance(value, list):
            return [copy_of(v) for v in value]
        if isinstance(value, tuple) and not hasattr(value, "_fields"):
            return tuple(copy_of(v) for v in value)
        if isinstance(value, (int, float, str, bool, bytes, type(None))):
            return value
        return copy.deepcopy(value)

    return copy_of(state), total


def tensor_bytes(state: Any) -> int:
    """The bytes of the tensors in a state (what a snapshot of it would hold), without copying anything."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(tensor_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(tensor_bytes(v) for v in state)
    return 0


def save_best(directory: Path, state: dict[str, Any]) -> Path:
    """Write `best.pt` atomically; only its own writer (the main thread of rank 0) clears its killed temp files."""
    if directory.is_dir():
        for stale in directory.glob(f".{BEST_NAME}.*.tmp"):
            stale.unlink(missing_ok=True)
    return write_checkpoint(directory / BEST_NAME, state)


def prune(directory: Path, keep: int) -> None:
    """Keep the newest `keep` checkpoints; remove the temp files of writes older than the newest checkpoint (left
    by a write that was killed; a write still in flight of an older step would be superseded anyway)."""
    found = list_checkpoints(directory)
    for old in found[:-keep]:
        old.unlink(missing_ok=True)
    newest = checkpoint_step(found[-1]) if found else None
    for stale in directory.glob(".step-*.tmp"):
        match = _TEMP.match(stale.name)
        if newest is not None and match and int(match.group(1)) < newest:
            stale.unlink(missing_ok=True)


def prune_stale(directory: Path) -> None:
    """Remove every checkpoint temp file: at a run's start (it holds the run's lock), they are all left by writes
    that were killed."""
    if directory.is_dir():
        for stale in directory.glob(".step-*.tmp"):
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
