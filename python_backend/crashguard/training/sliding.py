"""Sliding-window inference with back-off: on OOM halve sw_batch_size, then stitch on the CPU, then give up."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from monai.inferers import sliding_window_inference

from ..guard.cleanup import emergency_cleanup
from ..guard.failures import Failure, describe_failure, is_oom
from ..step.backoff import OutOfMemoryAtMinimum
from ..step.precision import Precision


@dataclass
class WindowPlan:
    sw_batch_size: int
    overlap: float
    stitch_on_cpu: bool = False


def guarded_sliding_window(image: torch.Tensor, model: torch.nn.Module, roi_size: Sequence[int],
                           plan: WindowPlan, precision: Precision, on_event: Callable[[str], None]) -> torch.Tensor:
    """Logits for `image` [B, C, X, Y, Z], under the training run's `precision`; `plan` is updated in place by any
    back-off (it sticks)."""
    while True:
        failure: Failure | None = None
        try:
            with precision.context(image.device.type):
                logits = sliding_window_inference(
                    image, tuple(roi_size), plan.sw_batch_size, model, overlap=plan.overlap,
                    device=torch.device("cpu") if plan.stitch_on_cpu else None,
                )
                assert isinstance(logits, torch.Tensor)  # a model that returns one tensor gets one back
                return logits.float()
        except Exception as exc:
            if not is_oom(exc):
                raise
            failure = describe_failure(exc)
        # Outside the except block: the traceback no longer pins the failed attempt's tensors.
        emergency_cleanup()
        if plan.sw_batch_size > 1:
            old = plan.sw_batch_size
            plan.sw_batch_size = max(1, old // 2)
            on_event(f"{failure.kind.value} in sliding-window inference: sw_batch_size {old}->{plan.sw_batch_size}")
        elif image.device.type != "cpu" and not plan.stitch_on_cpu:
            plan.stitch_on_cpu = True
            on_event(f"{failure.kind.value} in sliding-window inference at sw_batch_size 1: stitching on the CPU")
        else:
            raise OutOfMemoryAtMinimum("sliding-window inference", failure)
