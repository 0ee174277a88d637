"""Inference on CUDA under a VRAM budget: sliding-window batch 4 -> 2 -> 1, then stitching on the CPU, with the
unconstrained result (real CUDA OOMs from the capped allocator; the back-off itself is sliding.py's)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from gpu_helpers import mib, run_json
from locations import CHILDREN

pytestmark = pytest.mark.gpu


@pytest.mark.gpu_line("inference under a VRAM budget: sw-batch 4 -> 2 -> 1 -> CPU stitching")
def test_inference_falls_back_to_cpu_stitching(cuda: Any, tmp_path: Path,
                                               record_property: Callable[[str, object], None]) -> None:
    result = run_json([str(CHILDREN / "sliding_budget.py")], cwd=tmp_path, timeout=400)
    assert result["events"] == [
        "cuda_oom in sliding-window inference: sw_batch_size 4->2",
        "cuda_oom in sliding-window inference: sw_batch_size 2->1",
        "cuda_oom in sliding-window inference at sw_batch_size 1: stitching on the CPU",
    ]
    assert (result["sw_batch_size"], result["stitch_on_cpu"], result["out_device"]) == (1, True, "cpu")
    assert result["same_voxels"] >= 0.999  # fp16 windows: a handful of voxels on the 0.5 boundary may flip
    assert result["max_reserved"] <= result["budget"] * 1.001
    record_property("figures", f"budget {mib(result['budget'])} between GPU stitching ({mib(result['gpu_stitching'])})"
                               f" and CPU stitching ({mib(result['cpu_stitching'])}); 3 back-offs; "
                               f"{100 * result['same_voxels']:.3f} % of voxels as unconstrained")
