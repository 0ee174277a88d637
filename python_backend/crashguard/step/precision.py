"""Mixed precision: which autocast dtype a run uses, and whether it needs a GradScaler.

`train.amp` turns autocast on, `train.amp_dtype` picks its dtype:
- float16 (the default, as before): on CUDA with a GradScaler (float16's range is small: gradients would
  underflow); on the CPU it is not used (CPU float16 autocast is slow and badly covered), the run is float32.
- bfloat16: float32's range, so no GradScaler. On CUDA only where the GPU computes in it natively (compute
  capability 8 and later: Ampere, Ada, Hopper; or ROCm); on older GPUs, where torch would only emulate it
  slowly, the run falls back to float16 + GradScaler and says so (a `precision_fallback` event). On the CPU it
  is used when asked for explicitly: autocast keeps the activations for backward in bfloat16 (the RAM that
  decides how large a CPU step can be), and it lets the bfloat16 path be tested without a GPU. It is opt-in
  because its speed depends on the CPU (fast with AVX512-BF16/AMX, slower than float32 without).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Literal

import torch

AmpDtype = Literal["float16", "bfloat16"]


@dataclass(frozen=True)
class Precision:
    autocast: bool  # whether forward passes run under torch.autocast
    dtype: torch.dtype  # autocast's dtype (float32 when autocast is off)
    note: str | None = None  # why the config's request was changed, for the run's log and events

    @property
    def scaled(self) -> bool:
        """Whether the loss needs a GradScaler (float16 autocast)."""
        return self.autocast and self.dtype == torch.float16

    @property
    def name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def context(self, device_type: str) -> contextlib.AbstractContextManager[Any]:
        if not self.autocast:
            return contextlib.nullcontext()
        return torch.autocast(device_type, dtype=self.dtype)


def resolve_precision(amp: bool, amp_dtype: str, device_type: str, bf16_supported: bool = True) -> Precision:
    """What `train.amp`/`train.amp_dtype` mean on `device_type` ("cuda" or "cpu"); `bf16_supported`: whether the
    CUDA device computes in bfloat16 natively (native_bf16; ignored elsewhere)."""
    fp32 = Precision(False, torch.float32)
    if not amp:
        return fp32
    if device_type == "cuda":
        if amp_dtype == "bfloat16" and not bf16_supported:
            return Precision(True, torch.float16, "this GPU has no bfloat16 support: float16 autocast with a "
                                                  "GradScaler instead")
        return Precision(True, torch.bfloat16 if amp_dtype == "bfloat16" else torch.float16)
    if amp_dtype == "bfloat16":
        return Precision(True, torch.bfloat16)
    return fp32  # float16 autocast is used on CUDA only (as before)


def native_bf16(device: torch.device) -> bool:
    """Whether the CUDA device computes in bfloat16 natively (Ampere and later, or ROCm). torch's
    is_bf16_supported() also says yes where bfloat16 is only emulated (slow) on older GPUs."""
    if torch.version.hip:
        return True
    return torch.cuda.get_device_properties(device).major >= 8


def precision_for(amp: bool, amp_dtype: str, device: torch.device) -> Precision:
    """resolve_precision for a real device (asks CUDA about bfloat16)."""
    supported = device.type == "cuda" and amp and amp_dtype == "bfloat16" and native_bf16(device)
    return resolve_precision(amp, amp_dtype, device.type, bf16_supported=supported)
