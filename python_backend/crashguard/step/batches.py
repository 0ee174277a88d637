"""Splitting a collated batch into micro-batches, whatever its structure (tensor, dict, tuple, list)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


def batch_size(batch: Any) -> int:
    """Samples in a collated batch: the first dimension of its first tensor (depth first)."""
    found = _first_tensor(batch)
    if found is None:
        raise TypeError(f"cannot find a tensor in the batch (a {type(batch).__name__}) to split it into micro-batches")
    if found.ndim == 0:
        raise TypeError("the batch's first tensor is a scalar: it has no batch dimension to split")
    return int(found.shape[0])


def take(batch: Any, part: slice, size: int) -> Any:
    """The samples `part` of a batch of `size` samples: tensors and per-sample sequences are sliced on their first
    dimension, containers keep their type, anything else (a config string, a scalar) is passed on whole."""
    if isinstance(batch, torch.Tensor):
        return batch[part] if batch.ndim and batch.shape[0] == size else batch
    if isinstance(batch, Mapping):
        items = {k: take(v, part, size) for k, v in batch.items()}
        mapping_type: Any = type(batch)  # a dict subclass, or another mapping built from a dict
        return items if mapping_type is dict else mapping_type(items)
    if isinstance(batch, (list, tuple)):
        if _is_container_of_batches(batch):
            parts = [take(v, part, size) for v in batch]
            if hasattr(batch, "_fields"):  # a namedtuple
                return type(batch)(*parts)
            return type(batch)(parts)
        return batch[part] if len(batch) == size else batch  # per-sample values (file names, ids)
    shape = getattr(batch, "shape", None)  # numpy arrays
    if shape is not None and len(shape) and shape[0] == size:
        return batch[part]
    return batch


def _is_container_of_batches(items: list[Any] | tuple[Any, ...]) -> bool:
    return any(isinstance(v, (torch.Tensor, Mapping, list, tuple)) for v in items)


def _first_tensor(batch: Any) -> torch.Tensor | None:
    if isinstance(batch, torch.Tensor):
        return batch
    values = batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, (list, tuple)) else ()
    for value in values:
        found = _first_tensor(value)
        if found is not None:
            return found
    return None
