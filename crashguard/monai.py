"""Crash Guard for MONAI engines (and any PyTorch-Ignite Engine): `CrashGuardHandler` (docs/integrations.md)."""

from python_backend.integrations.ignite_handler import CrashGuardHandler

__all__ = ["CrashGuardHandler"]
