"""Crash Guard for Lightning: `CrashGuardCallback` (docs/integrations.md)."""

from python_backend.integrations.lightning_callback import CrashGuardCallback

__all__ = ["CrashGuardCallback"]
