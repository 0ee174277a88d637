"""Per-process CUDA settings applied at trainer start: the VRAM budget and cuDNN's algorithm search.

`memory.vram_budget_gb` caps this process's CUDA caching allocator with `set_per_process_memory_fraction`, as a
fraction of the card's total memory: an allocation that would take the process over it fails like a real
out-of-memory, so the OOM back-off (halve the micro-batch, redo the step) acts while a shared desktop GPU still
has room for the display and other programs. On the CPU it does nothing (RAM has memory.ram_budget_gb).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

log = logging.getLogger(__name__)
GIB = 2**30
Say = Callable[[str, str, dict[str, Any]], None]  # (event kind, message, fields)


def vram_fraction(budget_gb: float, total_bytes: int) -> float | None:
    """The share of a card of `total_bytes` that a budget of `budget_gb` GiB is; None when the budget is the
    whole card or more (no cap)."""
    if budget_gb <= 0 or total_bytes <= 0:
        raise ValueError(f"budget and total must be positive, got {budget_gb} GiB of {total_bytes} bytes")
    fraction = budget_gb * GIB / total_bytes
    return None if fraction >= 1.0 else fraction


def apply_vram_budget(budget_gb: float | None, device: torch.device, say: Say) -> float | None:
    """Cap this process's VRAM on `device`; returns the fraction set (None: no cap)."""
    if budget_gb is None:
        return None
    if device.type != "cuda":
        log.info("memory.vram_budget_gb (%g GiB) has no effect on %s", budget_gb, device)
        return None
    total = torch.cuda.get_device_properties(device).total_memory
    fraction = vram_fraction(budget_gb, total)
    if fraction is None:
        say("vram_budget", f"VRAM budget {budget_gb:g} GiB is not below the GPU's {total / GIB:.1f} GiB: no cap",
            {"budget_gb": budget_gb, "total_gb": round(total / GIB, 2), "fraction": None})
        return None
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    say("vram_budget", f"VRAM budget {budget_gb:g} GiB of the GPU's {total / GIB:.1f} GiB ({fraction:.0%}): "
        "the OOM back-off acts above it", {"budget_gb": budget_gb, "total_gb": round(total / GIB, 2),
                                          "fraction": round(fraction, 4)})
    return fraction


def apply_cudnn_benchmark(enabled: bool, device: torch.device) -> None:
    """cuDNN's algorithm search (CUDA only). MONAI's set_determinism turned it off and deterministic on; the
    search needs deterministic off too, so a benchmarked run is fast but not bit-reproducible."""
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = enabled
    if enabled:
        torch.backends.cudnn.deterministic = False
        log.info("cudnn.benchmark on: fastest convolution algorithms, not bit-reproducible")
