"""Crash Guard's Python side: memory monitoring and guards, the sidecar, and safe MONAI training.

The names below are the seed's public API. Importing this package never imports torch.
"""

from .guard import emergency_cleanup, gpu_safe_context, memory_safe_context, safe_execution
from .guard.failures import MemoryPressureError
from .monitor import GPUMonitor, MemoryMonitor

__version__ = "0.1.0"
__all__ = [
    "GPUMonitor", "MemoryMonitor", "MemoryPressureError", "emergency_cleanup", "gpu_safe_context",
    "memory_safe_context", "safe_execution",
]
