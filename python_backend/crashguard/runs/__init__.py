"""Training runs that belong to Crash Guard: their status files, the trainer-side hook, and control."""

from .hook import RunHook
from .status import ControlAction, RunState, RunStatus

__all__ = ["ControlAction", "RunHook", "RunState", "RunStatus"]
