"""Validation post-processing: Dice per region (TC, WT, ET) of one case, where the logits are.

The labels follow the logits, not the model: when sliding-window inference falls back to stitching on the CPU
(sliding.py), the logits come back on the CPU while the model (and, before, the labels) sit on the GPU.
Thresholding and counting run one region at a time on booleans (1 byte a voxel, not float32 copies of the
volume); if that still runs out of GPU memory, it is redone on the CPU; a CPU OOM stops the run as an OOM at
the minimum does (backoff.OutOfMemoryAtMinimum), with a checkpoint, instead of killing it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..guard.cleanup import emergency_cleanup
from ..guard.failures import Failure, describe_failure, is_oom
from ..step.backoff import OutOfMemoryAtMinimum


def region_dice(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """[B, R] Dice per case and region on `logits.device`; NaN where the label has no voxel of the region
    (MONAI DiceMetric's ignore_empty). `logits` [B, R, ...] (foreground where > 0, i.e. sigmoid > 0.5),
    `label` [B, R, ...] binary masks (any dtype, any device)."""
    label = label.to(logits.device)
    scores = []
    for region in range(logits.shape[1]):
        predicted = logits[:, region] > 0
        truth = label[:, region] > 0
        dims = tuple(range(1, predicted.ndim))
        overlap = (predicted & truth).sum(dims).double()
        sizes = predicted.sum(dims).double() + truth.sum(dims).double()
        known = truth.flatten(1).any(1)
        scores.append(torch.where(known, 2 * overlap / sizes.clamp_min(1), torch.full_like(overlap, float("nan"))))
    return torch.stack(scores, dim=1)


def guarded_region_dice(logits: torch.Tensor, label: torch.Tensor, on_event: Callable[[str], None]) -> torch.Tensor:
    """region_dice, on the CPU after a GPU OOM; [B, R] float64 on the CPU."""
    failure: Failure | None = None
    try:
        return region_dice(logits, label).cpu()
    except Exception as exc:
        if not is_oom(exc):
            raise
        failure = describe_failure(exc)
    emergency_cleanup()  # outside the except block: the traceback no longer pins the failed attempt's tensors
    if logits.device.type == "cpu":
        raise OutOfMemoryAtMinimum("validation post-processing", failure)
    on_event(f"{failure.kind.value} in validation post-processing: scoring on the CPU")
    try:
        return region_dice(logits.cpu(), label.cpu())
    except Exception as exc:
        if not is_oom(exc):
            raise
        failure = describe_failure(exc)
    emergency_cleanup()
    raise OutOfMemoryAtMinimum("validation post-processing", failure)
