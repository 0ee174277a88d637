"""Sliding-window inference on CUDA under a VRAM budget between what stitching on the GPU and stitching on the
CPU need: the guarded inference must fall back sw_batch_size 4 -> 2 -> 1, then stitch on the CPU, and still give
the unconstrained result.

usage: sliding_budget.py
The budget is measured here: the peak reserved VRAM of the whole inference at sw_batch_size 1 stitching on the
GPU (the input, the model, the output and count buffers of the full volume, one window's activations) and on
the CPU (no full-volume buffers on the GPU); the allocator is capped halfway (set_per_process_memory_fraction).
Prints one JSON line.
"""

from __future__ import annotations

import gc
import json
import sys

import torch

from crashguard.step.precision import Precision
from crashguard.training.config import ModelConfig
from crashguard.training.model import build_model
from crashguard.training.sliding import WindowPlan, guarded_sliding_window

ROI = (96, 96, 96)
SIZE = 256  # a volume whose full-size output buffers dominate one window's activations
FLOAT16 = Precision(autocast=True, dtype=torch.float16)  # AMP as the CUDA training runs use it


def peak(image: torch.Tensor, model: torch.nn.Module, plan: WindowPlan) -> tuple[int, torch.Tensor]:
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        out = guarded_sliding_window(image, model, ROI, plan, FLOAT16, lambda message: None).cpu()
    return torch.cuda.max_memory_reserved(), out


def main() -> int:
    torch.manual_seed(0)
    device = torch.device("cuda", 0)
    model = build_model(ModelConfig(init_filters=16, levels=4)).to(device).eval()
    image = torch.randn(1, 4, SIZE, SIZE, SIZE, device=device)
    on_gpu, reference = peak(image, model, WindowPlan(sw_batch_size=1, overlap=0.25))
    on_cpu, _ = peak(image, model, WindowPlan(sw_batch_size=1, overlap=0.25, stitch_on_cpu=True))
    if on_gpu < 1.2 * on_cpu:
        print(f"calibration failed: GPU stitching {on_gpu}, CPU stitching {on_cpu}", file=sys.stderr)
        return 10
    budget = (on_gpu + on_cpu) // 2
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(budget / torch.cuda.get_device_properties(device).total_memory, device)
    torch.cuda.reset_peak_memory_stats()
    events: list[str] = []
    plan = WindowPlan(sw_batch_size=4, overlap=0.25)
    with torch.no_grad():
        out = guarded_sliding_window(image, model, ROI, plan, FLOAT16, events.append)
    same = ((torch.sigmoid(out) > 0.5) == (torch.sigmoid(reference) > 0.5)).float().mean().item()
    print(json.dumps({"events": events, "budget": budget, "gpu_stitching": on_gpu, "cpu_stitching": on_cpu,
                      "max_reserved": torch.cuda.max_memory_reserved(), "out_device": str(out.device),
                      "sw_batch_size": plan.sw_batch_size, "stitch_on_cpu": plan.stitch_on_cpu,
                      "same_voxels": same, "shape": list(out.shape)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
