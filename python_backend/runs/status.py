"""The status file a training run keeps current: `runs/<name>/status.json`, and its control folder."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from enum import Enum
from pathlib import Path
from typing import Any

STATUS_VERSION = 1
STATUS_FILE = "status.json"
CONTROL_DIR = "control"


class RunState(str, Enum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    FINISHED = "finished"  # ended normally
    STOPPED = "stopped"  # ended on request, with a checkpoint
    FAILED = "failed"  # ended by an exception it reported itself
    CRASHED = "crashed"  # vanished without a clean end (set by whoever notices: supervisor or sidecar)

    @property
    def terminal(self) -> bool:
        return self in (RunState.FINISHED, RunState.STOPPED, RunState.FAILED, RunState.CRASHED)


class ControlAction(str, Enum):
    CLEANUP = "cleanup"
    CHECKPOINT_AND_STOP = "checkpoint_and_stop"


@dataclass
class RunStatus:
    name: str
    pid: int
    create_time: float  # psutil's create time: with the pid, identifies the process (pids are reused)
    state: str = RunState.STARTING.value
    rank: int = 0
    world_size: int = 1
    step: int = 0
    epoch: int = 0
    micro_batch: int | None = None
    accumulation: int | None = None
    loss: float | None = None
    peak_rss: int = 0
    peak_vram: int | None = None
    last_event: str | None = None
    config: str | None = None
    checkpoint: str | None = None
    started: float = 0.0
    updated: float = 0.0
    exit_cause: str | None = None
    resume_command: dict[str, Any] | None = None  # {"argv": [interpreter, ...], "cwd": dir}: how to resume it
    version: int = STATUS_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> RunStatus | None:
        """Parse a status file's content; None if it is not a valid status (missing or mistyped fields)."""
        if not isinstance(data, dict):
            return None
        known = {f.name for f in fields(cls)}
        try:
            status = cls(**{k: v for k, v in data.items() if k in known})
        except TypeError:
            return None
        if not isinstance(status.pid, int) or not isinstance(status.create_time, (int, float)):
            return None
        if status.state not in {s.value for s in RunState}:
            return None
        status.resume_command = valid_resume_command(status.resume_command)
        return status


MAX_RESUME_ARGS = 256
MAX_RESUME_CHARS = 32768


def valid_resume_command(value: Any) -> dict[str, Any] | None:
    """A recorded resume command, or None if it is not exactly {argv: [non-empty strings], cwd: absolute path}
    within size limits. It is a claim from a file: the client still shows it and runs it only when asked."""
    if not isinstance(value, dict) or set(value) != {"argv", "cwd"}:
        return None
    argv, cwd = value["argv"], value["cwd"]
    if not isinstance(argv, list) or not argv or len(argv) > MAX_RESUME_ARGS:
        return None
    if not all(isinstance(a, str) and a and "\0" not in a for a in argv):
        return None
    if not isinstance(cwd, str) or not os.path.isabs(cwd) or "\0" in cwd or not os.path.isabs(argv[0]):
        return None
    if sum(len(a) for a in argv) + len(cwd) > MAX_RESUME_CHARS:
        return None
    return {"argv": list(argv), "cwd": cwd}


def status_path(run_dir: Path, rank: int = 0) -> Path:
    """Rank 0 (and a single-process run) writes status.json; other ranks of a distributed run status.rankN.json."""
    return run_dir / (STATUS_FILE if rank == 0 else f"status.rank{rank}.json")


def control_dir(run_dir: Path, rank: int = 0) -> Path:
    return run_dir / (CONTROL_DIR if rank == 0 else f"{CONTROL_DIR}.rank{rank}")
