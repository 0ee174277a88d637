"""Memory guards usable from any Python code: retry, safe contexts, cleanup. Never imports torch."""

from .cleanup import CleanupReport, CleanupStep, emergency_cleanup
from .contexts import gpu_safe_context, memory_safe_context
from .failures import Failure, FailureKind, MemoryPressureError, classify, describe_failure, is_oom
from .retry import Backoff, safe_execution, shrink_kwarg

__all__ = [
    "Backoff", "CleanupReport", "CleanupStep", "Failure", "FailureKind", "MemoryPressureError", "classify",
    "describe_failure", "emergency_cleanup", "gpu_safe_context", "is_oom", "memory_safe_context",
    "safe_execution", "shrink_kwarg",
]
