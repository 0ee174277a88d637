"""The status file a training run keeps current: `runs/<name>/status.json`, its control folder and its lock file.

A status file is a claim made by whatever wrote it, so `parse_status` checks every field before anything uses it:
types (from the dataclass annotations), finite numbers, ranges, and that the file's name, folder and content agree.
"""

from __future__ import annotations

import math
import operator
import os
import re
import types
import typing
from dataclasses import asdict, dataclass, fields
from enum import Enum
from pathlib import Path
from typing import Any

STATUS_VERSION = 2  # 2: the run holds a lock file and records it (lock_dev, lock_ino, lock_fd)
STATUS_FILE = "status.json"
CONTROL_DIR = "control"
LOCK_FILE = ".lock"
MAX_WORLD_SIZE = 65_536
MAX_TEXT = 8_192  # characters in any text field (paths, events, causes)
SAFE_INT = 2**53 - 1  # the largest integer a JavaScript reader holds exactly: no int beyond it reaches the wire
PID_MAX = 4_194_304  # the kernel's PID_MAX_LIMIT
MAX_TIME = 4_102_444_800.0  # 2100-01-01 UTC: no run wrote a later time
# One folder name, never a path: no separator, no leading dot or dash, no spaces or control characters.
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
RANK_STATUS_FILE = re.compile(r"status\.rank([1-9][0-9]{0,5})\.json")
REQUEST_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")  # a control request's id, also its file name


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


class InvalidStatus(ValueError):
    """A status file's content failed a check; the message names the field."""


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
    lock_dev: int | None = None  # st_dev and st_ino of the lock file the run holds (runs/hook.py)
    lock_ino: int | None = None
    lock_fd: int | None = None  # its descriptor number in the run: where the sidecar looks first
    step_seconds: float | None = None  # the run's typical step time (an average of recent steps), for hang detection
    resume_command: dict[str, Any] | None = None  # {"argv": [interpreter, ...], "cwd": dir}: how to resume it
    oom_score_adj: int | None = None  # the score the run volunteered with at registration (guard/oom_score.py)
    # Its own memory cgroup, as the trainer sees it (guard/high_mark.py; null when it has none):
    memory_cgroup: str | None = None  # the group's directory
    memory_max: int | None = None  # hard limit, bytes
    memory_high: int | None = None  # high mark, bytes
    memory_used: int | None = None  # working set at the last check, bytes
    memory_high_events: int | None = None  # the kernel's throttle events since the run began (cgroup v2)
    memory_over_high: int | None = None  # step boundaries at which the trainer found itself over its high mark
    # The newest checkpoint's step and the wall time of its boundary (`checkpoint` is its path): what a crash now
    # would redo is step - checkpoint_step steps, updated - checkpoint_time seconds.
    checkpoint_step: int | None = None
    checkpoint_time: float | None = None
    snapshot_bytes: int | None = None  # RAM held by a checkpoint's snapshot while it is written in the background
    # Written with state "crashed" by the run's supervisor or watchdog: an HMAC of the crash record with a key only
    # this user's processes can read (runs/crash_seal.py). A file alone cannot carry it.
    crash_seal: str | None = None
    version: int = STATUS_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> RunStatus | None:
        """Parse a status file's content; None if it is not a valid status (see `parse_status` for why)."""
        try:
            return parse_status(data)
        except InvalidStatus:
            return None


# -- validation --------------------------------------------------------------------------------------------------
_REQUIRED = ("name", "pid", "create_time")
_U64 = 2**64 - 1
# Each number's own range (inclusive). Every int and float field has one (checked at import), except `loss`, which
# may be any finite number. lock_dev and lock_ino are compared with the kernel's st_dev/st_ino (overlayfs inode
# numbers use the high bits) and never sent on the wire; every other int is within SAFE_INT.
_RANGES: dict[str, tuple[float, float]] = {
    "pid": (1, PID_MAX), "rank": (0, MAX_WORLD_SIZE - 1), "world_size": (1, MAX_WORLD_SIZE),
    "create_time": (0, MAX_TIME), "started": (0, MAX_TIME), "updated": (0, MAX_TIME),
    "step": (0, SAFE_INT), "epoch": (0, SAFE_INT), "micro_batch": (0, SAFE_INT), "accumulation": (0, SAFE_INT),
    "peak_rss": (0, SAFE_INT), "peak_vram": (0, SAFE_INT),
    "lock_dev": (0, _U64), "lock_ino": (0, _U64), "lock_fd": (0, 2**31 - 1),
    "step_seconds": (0, 365 * 86_400.0), "oom_score_adj": (-1000, 1000),
    "memory_max": (0, SAFE_INT), "memory_high": (0, SAFE_INT), "memory_used": (0, SAFE_INT),
    "memory_high_events": (0, SAFE_INT), "memory_over_high": (0, SAFE_INT), "version": (1, 1000),
    "checkpoint_step": (0, SAFE_INT), "checkpoint_time": (0, MAX_TIME), "snapshot_bytes": (0, SAFE_INT),
}
_ANY_FINITE = frozenset({"loss"})


_SCALARS = (int, float, str, bool)


def _understood(hint: Any) -> bool:
    """Annotations the checker knows: int, float, str, bool, Any, list[X], dict[str, X], X | None."""
    if hint in _SCALARS or hint is Any:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        return len(args) == 1 and _understood(args[0])
    if origin is dict:
        return len(args) == 2 and args[0] is str and _understood(args[1])
    if origin in (typing.Union, types.UnionType):
        return all(a is type(None) or _understood(a) for a in args)
    return False


def _scalar_of(hint: Any) -> tuple[Any, bool]:
    """(the non-null type, nullable) of an annotation."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else hint), type(None) in args
    return hint, False


def _field_types() -> dict[str, Any]:
    """Each field's annotation (so a new field is checked too). A field whose annotation the checker does not
    understand, or a number without a range, fails here, at import, naming it: add a rule rather than let an
    unchecked value through."""
    hints = typing.get_type_hints(RunStatus)
    for f in fields(RunStatus):
        if not _understood(hints[f.name]):
            raise TypeError(f"RunStatus.{f.name}: no validation rule for {hints[f.name]!r}")
        if _scalar_of(hints[f.name])[0] in (int, float) and f.name not in _RANGES and f.name not in _ANY_FINITE:
            raise TypeError(f"RunStatus.{f.name}: a number without a range (add it to _RANGES)")
    return {f.name: hints[f.name] for f in fields(RunStatus)}


_TYPES = _field_types()


def _describe(hint: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    if hint in names:
        return names[hint]
    origin = typing.get_origin(hint)
    return {list: "a list", dict: "an object"}.get(origin, str(hint))


def _check_value(key: str, value: Any, hint: Any) -> Any:
    """`value` as the field `key` annotated `hint`, or InvalidStatus naming the field."""
    if hint is Any:
        return value  # strict JSON already: finite numbers, size-capped
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise InvalidStatus(f"{key}: must not be null")
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _check_value(key, value, option)
            except InvalidStatus as exc:
                errors.append(exc)
        raise errors[0]
    if value is None:
        raise InvalidStatus(f"{key}: must not be null")
    if origin is list:
        if not isinstance(value, list):
            raise InvalidStatus(f"{key}: expected a list, got {type(value).__name__}")
        return [_check_value(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise InvalidStatus(f"{key}: expected an object, got {type(value).__name__}")
        return {k: _check_value(f"{key}.{k}", v, args[1]) for k, v in value.items()}
    if hint is str:
        if not isinstance(value, str):
            raise InvalidStatus(f"{key}: expected a string, got {type(value).__name__}")
        if len(value) > MAX_TEXT:
            raise InvalidStatus(f"{key}: longer than {MAX_TEXT} characters")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise InvalidStatus(f"{key}: expected true or false, got {type(value).__name__}")
        return value
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        shown = repr(value) if isinstance(value, float) else type(value).__name__
        raise InvalidStatus(f"{key}: expected an integer, got {shown}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidStatus(f"{key}: expected a number, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidStatus(f"{key}: not a finite number")
    if isinstance(value, int) and abs(value) > 2**64:  # before float(): a huge int would overflow it
        raise InvalidStatus(f"{key}: {str(value)[:24]}... is out of range")
    return float(value) if hint is float else value


def coerce_field(key: str, value: Any) -> Any:
    """A value for RunStatus field `key` as the hook will write it: numpy/torch scalars become int/float, a
    non-finite float is kept (written as null); anything else of the wrong kind is a TypeError at the call site,
    not a status file the sidecar would refuse later."""
    if key not in _TYPES:
        raise AttributeError(f"RunStatus has no field {key!r}")
    base, optional = _scalar_of(_TYPES[key])
    if value is None and optional:
        return None
    try:
        if base is str and isinstance(value, str):
            return value[:MAX_TEXT]
        if base is int and not isinstance(value, bool):
            return operator.index(value)
        if base is float and not isinstance(value, (bool, str)):
            return float(value)
        if base not in (str, int, float):
            return _check_value(key, value, _TYPES[key])
    except (TypeError, ValueError):
        pass
    raise TypeError(f"RunStatus.{key}: expected {_describe(base)}{' or None' if optional else ''}, "
                    f"got {type(value).__name__} {value!r:.40}")


def parse_status(data: Any) -> RunStatus:
    """A status file's parsed JSON as a RunStatus, or InvalidStatus naming the first field that is wrong.
    Unknown keys are ignored (a newer hook may add fields)."""
    if not isinstance(data, dict):
        raise InvalidStatus(f"expected a JSON object, got {type(data).__name__}")
    for key in _REQUIRED:
        if key not in data:
            raise InvalidStatus(f"{key}: missing")
    values = {key: _check_value(key, data[key], _TYPES[key]) for key in _TYPES if key in data}
    status = RunStatus(**values)
    if not RUN_NAME.fullmatch(status.name):
        raise InvalidStatus(f"name: {status.name[:40]!r} is not a valid run name")
    for key, (low, high) in _RANGES.items():
        value = getattr(status, key)
        if value is not None and not low <= value <= high:
            raise InvalidStatus(f"{key}: expected {_shown(low)}..{_shown(high)}, got {str(value)[:24]}")
    if status.create_time <= 0:
        raise InvalidStatus(f"create_time: expected a positive time, got {status.create_time}")
    if not 0 <= status.rank < status.world_size:
        raise InvalidStatus(f"rank: expected 0-{status.world_size - 1} (world_size {status.world_size}), "
                            f"got {status.rank}")
    if status.state not in {s.value for s in RunState}:
        raise InvalidStatus(f"state: unknown state {status.state[:40]!r}")
    if status.version < 1:
        raise InvalidStatus(f"version: expected 1 or more, got {status.version}")
    status.resume_command = valid_resume_command(status.resume_command)  # a bad one is dropped, not run
    return status


def _shown(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def valid_run_name(name: str) -> bool:
    return bool(RUN_NAME.fullmatch(name))


def rank_of_status_file(filename: str) -> int | None:
    """0 for status.json, N for status.rankN.json, None for any other name."""
    if filename == STATUS_FILE:
        return 0
    match = RANK_STATUS_FILE.fullmatch(filename)
    return int(match.group(1)) if match else None


# -- the files of one run ----------------------------------------------------------------------------------------
def _suffix(rank: int) -> str:
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
        raise ValueError(f"rank must be a non-negative integer, got {rank!r}")  # never a path segment
    return "" if rank == 0 else f".rank{rank}"


def status_name(rank: int = 0) -> str:
    """Rank 0 (and a single-process run) writes status.json; other ranks of a distributed run status.rankN.json."""
    return STATUS_FILE if rank == 0 else f"status{_suffix(rank)}.json"


def control_name(rank: int = 0) -> str:
    return CONTROL_DIR + _suffix(rank)


def lock_name(rank: int = 0) -> str:
    """The file a live run (rank) holds open and flock'ed: `.lock`, other ranks `.lock.rankN`."""
    return LOCK_FILE + _suffix(rank)


MAX_RESUME_ARGS = 256
MAX_RESUME_CHARS = 8192  # in all: a real command line is a few hundred characters; a sample stays small
MAX_PATH_CHARS = 4096  # PATH_MAX: no argument and no cwd is longer, and the wire never cuts one


def valid_resume_command(value: Any) -> dict[str, Any] | None:
    """A recorded resume command, or None if it is not exactly {argv: [non-empty strings], cwd: absolute path}
    within size limits. It is a claim from a file: the client still shows it and runs it only when asked."""
    if not isinstance(value, dict) or set(value) != {"argv", "cwd"}:
        return None
    argv, cwd = value["argv"], value["cwd"]
    if not isinstance(argv, list) or not argv or len(argv) > MAX_RESUME_ARGS:
        return None
    if not all(isinstance(a, str) and a and "\0" not in a and len(a) <= MAX_PATH_CHARS for a in argv):
        return None
    if not isinstance(cwd, str) or not os.path.isabs(cwd) or "\0" in cwd or not os.path.isabs(argv[0]):
        return None
    if len(cwd) > MAX_PATH_CHARS:
        return None
    if sum(len(a) for a in argv) + len(cwd) > MAX_RESUME_CHARS:
        return None
    return {"argv": list(argv), "cwd": cwd}


def status_path(run_dir: Path, rank: int = 0) -> Path:
    return run_dir / status_name(rank)


def control_dir(run_dir: Path, rank: int = 0) -> Path:
    return run_dir / control_name(rank)


def lock_path(run_dir: Path, rank: int = 0) -> Path:
    return run_dir / lock_name(rank)
