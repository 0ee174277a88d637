"""The sidecar's protocol: method names and payloads. One source of truth, documented in docs/protocol.md and
mirrored by hand in extension/src/protocol.ts (a test compares the method names).

Payloads are dataclasses with snake_case fields; `to_wire` turns them into the camelCase JSON the client sees, and
is the one place that makes every frame safe for its reader (contract C2): non-finite numbers become null, every
int is within +-(2**53 - 1) (what a JavaScript number holds exactly), every string is bounded (TEXT_LIMITS), and
`fit_runs` keeps a sample (or a runs list) within MAX_FRAME_BYTES whatever a runs folder holds, counting what it
left out. Run payloads (RunInfo, CleanupResult, StopResult) live with the code that produces them in `runs/` and
are re-exported here, so this module lists every payload. Plain Python: no pygls, no torch.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import math
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..monitor.gpu import GpuReading
from ..runs.control import DEFAULT_CLEANUP_TIMEOUT, DEFAULT_STOP_TIMEOUT, CleanupResult, RunCleanup, StopResult
from ..runs.liveness import LockHolder
from ..runs.lock_holders import EndHolderResult
from ..runs.registry import RunInfo, RunMemory
from ..runs.status import RUN_NAME
from .history import HistoryEvent, HistoryPoint

# -- server -> client notifications --------------------------------------------------------------------------
SAMPLE = "crashGuard/sample"
WARNING = "crashGuard/warning"
RUN_EVENT = "crashGuard/runEvent"
ACTION = "crashGuard/action"
# -- client -> server requests -------------------------------------------------------------------------------
STATUS = "crashGuard/status"
CLEANUP = "crashGuard/cleanup"
RUNS = "crashGuard/runs"
STOP_RUN = "crashGuard/stopRun"
PROCESS_DETAIL = "crashGuard/processDetail"
UPDATE_SETTINGS = "crashGuard/updateSettings"
HISTORY = "crashGuard/history"
END_LOCK_HOLDER = "crashGuard/endLockHolder"
# -- client -> server notifications (several windows share one monitor: docs/protocol.md) ---------------------
WINDOW_STATE = "crashGuard/windowState"  # {"focused": bool}: where a warning is shown
STOP_MONITOR = "crashGuard/stopMonitor"  # {replace?}: Stop (exit once no window is left) or Restart Memory Monitor

NOTIFICATIONS = (SAMPLE, WARNING, RUN_EVENT, ACTION)
REQUESTS = (STATUS, CLEANUP, RUNS, STOP_RUN, PROCESS_DETAIL, UPDATE_SETTINGS, HISTORY, END_LOCK_HOLDER)
CLIENT_NOTIFICATIONS = (WINDOW_STATE, STOP_MONITOR)
METHODS = NOTIFICATIONS + REQUESTS + CLIENT_NOTIFICATIONS

# Levels a resource can be at; forecasts also use FULL (the limit itself, 100 %).
NORMAL, WARNING_LEVEL, CRITICAL, FULL = "normal", "warning", "critical", "full"
RUN_EVENTS = ("started", "finished", "stopped", "failed", "crashed", "hung", "recovered")
# crashGuard/action's `action`: the escalation ladder's rungs (terminate: SIGTERM after the stop timeout).
ACTIONS = ("cleanup", "checkpointAndStop", "terminate")
# JSON-RPC error of a request refused because every worker for it is busy and its queue is full (the
# implementation-defined server-error range; -32002 is LSP's ServerNotInitialized).
SERVER_BUSY = -32000


@dataclass(frozen=True)
class RamInfo:
    total: int
    available: int
    used: int
    percent: float
    swap_total: int
    swap_used: int
    swap_percent: float
    physical_total: int
    limit_source: str
    cgroup_path: str | None
    level: str


@dataclass(frozen=True)
class GpuProcessInfo:
    """A process holding memory on a GPU (any process NVML lists there, guarded run or not)."""

    pid: int
    name: str
    user: str | None  # None: not visible from the sidecar (another pid namespace, or gone)
    command: str | None
    used: int | None  # bytes on this GPU; None where the driver does not say


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    total: int | None
    used: int | None
    percent: float | None
    utilization: int | None
    level: str
    processes: list[GpuProcessInfo] = field(default_factory=list)  # heaviest first


def gpu_processes(reading: GpuReading) -> list[GpuProcessInfo]:
    """A GPU reading's processes for the wire (in the reading's order: heaviest first)."""
    return [GpuProcessInfo(proc.pid, proc.name, proc.user, proc.command, proc.used) for proc in reading.processes]


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    name: str
    rss: int


@dataclass(frozen=True)
class Forecast:
    resource: str
    level: str  # the level that will be reached: warning, critical or full
    seconds: float
    bytes_per_second: float
    message: str
    # "trend": a crossing `seconds` ahead at the recent rate; "pressure": memory stalls now (seconds and
    # bytes_per_second 0), a warning or one on its way, whatever the percent says
    kind: str = "trend"


@dataclass(frozen=True)
class PressureInfo:
    """Memory pressure (PSI): the share of the last `seconds` during which tasks were stalled waiting for memory."""

    some: float  # percent: at least one task stalled
    full: float | None  # percent: every non-idle task stalled at once
    seconds: float  # the window the shares cover
    avg10_some: float  # the kernel's own 10 s averages
    avg10_full: float | None
    level: str  # normal | warning


@dataclass(frozen=True)
class ThresholdsInfo:
    ram_warning_percent: float
    ram_critical_percent: float
    vram_warning_percent: float
    vram_critical_percent: float
    pressure_some_percent: float = 20.0
    pressure_full_percent: float = 10.0
    pressure_seconds: float = 10.0


@dataclass(frozen=True)
class Sample:
    seq: int
    time: float
    level: str
    ram: RamInfo
    gpus: list[GpuInfo]
    gpu_reason: str | None
    top_processes: list[ProcessInfo]
    runs: list[RunInfo]
    forecasts: list[Forecast]
    thresholds: ThresholdsInfo
    cost_ms: float  # how long taking this sample took in the sidecar
    pressure: PressureInfo | None = None  # the whole system's; None until a window is covered, or without PSI
    pressure_reason: str | None = None  # why there is no pressure figure at all (PSI unavailable)
    runs_omitted: int = 0  # runs not in `runs` (ended runs past the list's length or its size cap)


@dataclass(frozen=True)
class WarningParams:
    resource: str
    level: str
    previous: str
    percent: float
    threshold_percent: float
    message: str
    runs: list[str]
    time: float


@dataclass(frozen=True)
class RunEventParams:
    event: str
    run: RunInfo
    message: str
    # A run killed by the kernel's OOM killer: the heaviest processes of the last sample before its death
    heaviest: list[ProcessInfo] | None = None


@dataclass(frozen=True)
class ActionParams:
    action: str  # one of ACTIONS
    reason: str
    result: CleanupResult | StopResult
    # Show it as a toast: true in one window (where a warning would go), false in the others (they log it); the
    # shared monitor's router sets it per window
    notify: bool = True


@dataclass(frozen=True)
class ProcessDetailResult:
    pid: int
    rss: int
    uss: int | None
    pss: int | None
    swap: int | None


@dataclass(frozen=True)
class RunsResult:
    runs: list[RunInfo] = field(default_factory=list)
    runs_omitted: int = 0  # as in a Sample


@dataclass(frozen=True)
class HistoryResult:
    """crashGuard/history: the kept samples (compact) and events of a window, oldest first."""

    points: list[HistoryPoint]
    events: list[HistoryEvent]
    thresholds: ThresholdsInfo
    gpu_names: list[str]  # names of the GPUs of the latest sample; a point's gpuPercent follows this order
    interval_ms: int
    max_points: int  # the ring buffer's size: older points are gone


# -- request params -------------------------------------------------------------------------------------------
class ParamsError(ValueError):
    """Malformed request params; `field` names the offending one (sent as InvalidParams)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def _object(params: Any, allowed: set[str]) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ParamsError("params", f"expected an object, got {type(params).__name__}")
    for key in params:
        if key not in allowed:
            raise ParamsError(str(key)[:80], f"unknown parameter (expected: {', '.join(sorted(allowed)) or 'none'})")
    return params


def _timeout(params: dict[str, Any], default_s: float) -> float:
    raw = params.get("timeoutMs")
    if raw is None:
        return default_s
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= 600_000:
        raise ParamsError("timeoutMs", f"expected an integer 0-600000, got {_shown(raw)}")
    return raw / 1000.0


def _pid(params: dict[str, Any]) -> int:
    pid = params.get("pid")
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise ParamsError("pid", f"expected a positive integer, got {_shown(pid)}")
    return pid


def _shown(value: Any) -> str:
    """A rejected value in an error message: its repr, cut (a request can carry megabytes)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:79] + "\u2026"


MAX_PARAM_RUNS = 1024


@dataclass(frozen=True)
class CleanupParams:
    runs: list[str] | None  # None = every live run
    timeout: float  # seconds

    @classmethod
    def parse(cls, params: Any) -> CleanupParams:
        obj = _object(params, {"runs", "timeoutMs"})
        runs = obj.get("runs")
        if runs is not None and (not isinstance(runs, list) or len(runs) > MAX_PARAM_RUNS
                                 or not all(isinstance(r, str) and RUN_NAME.fullmatch(r) for r in runs)):
            raise ParamsError("runs", f"expected a list of at most {MAX_PARAM_RUNS} run names, got {_shown(runs)}")
        return cls(runs, _timeout(obj, DEFAULT_CLEANUP_TIMEOUT))


@dataclass(frozen=True)
class StopRunParams:
    run: str
    timeout: float
    dir: str | None = None  # the run's folder (RunInfo.dir): picks its runs directory in a multi-root workspace

    @classmethod
    def parse(cls, params: Any) -> StopRunParams:
        obj = _object(params, {"run", "timeoutMs", "dir"})
        run = obj.get("run")
        if not isinstance(run, str) or not RUN_NAME.fullmatch(run):
            raise ParamsError("run", f"expected a run name, got {_shown(run)}")
        run_dir = obj.get("dir")
        if run_dir is not None and (not isinstance(run_dir, str) or not os.path.isabs(run_dir)
                                    or len(run_dir) > 4096 or "\0" in run_dir):
            raise ParamsError("dir", f"expected the run's absolute folder (RunInfo.dir), got {_shown(run_dir)}")
        return cls(run, _timeout(obj, DEFAULT_STOP_TIMEOUT), run_dir)


@dataclass(frozen=True)
class EndLockHolderParams:
    dir: str  # the run's folder (RunInfo.dir)
    pid: int  # the process RunInfo.lockHolder named
    rank: int = 0
    force: bool = False  # SIGKILL instead of SIGTERM: the user chose "End Forcibly" after SIGTERM did not end it

    @classmethod
    def parse(cls, params: Any) -> EndLockHolderParams:
        obj = _object(params, {"dir", "pid", "rank", "force"})
        run_dir = obj.get("dir")
        if not isinstance(run_dir, str) or not os.path.isabs(run_dir) or len(run_dir) > 4096 or "\0" in run_dir:
            raise ParamsError("dir", f"expected the run's absolute folder (RunInfo.dir), got {_shown(run_dir)}")
        rank = obj.get("rank", 0)
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < 65_536:
            raise ParamsError("rank", f"expected an integer 0-65535, got {_shown(rank)}")
        force = obj.get("force", False)
        if not isinstance(force, bool):
            raise ParamsError("force", f"expected true or false, got {_shown(force)}")
        return cls(run_dir, _pid(obj), rank, force)


def parse_empty(params: Any) -> None:
    _object(params, set())


def parse_process_detail(params: Any) -> int:
    return _pid(_object(params, {"pid"}))


def parse_history(params: Any) -> float | None:
    """crashGuard/history's window in seconds; None = everything kept."""
    seconds = _object(params, {"seconds"}).get("seconds")
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= 86_400:
        raise ParamsError("seconds", f"expected a number of seconds in (0, 86400], got {_shown(seconds)}")
    return float(seconds)


def parse_stop_monitor(params: Any) -> bool:
    """crashGuard/stopMonitor's `replace` (Restart Memory Monitor: the monitor exits for every window, which
    reconnect to the new one), false when absent (Stop Memory Monitor)."""
    replace = _object(params, {"replace"}).get("replace", False)
    if not isinstance(replace, bool):
        raise ParamsError("replace", f"expected true or false, got {replace!r}")
    return replace


def parse_window_state(params: Any) -> bool:
    """crashGuard/windowState's `focused`."""
    focused = _object(params, {"focused"}).get("focused")
    if not isinstance(focused, bool):
        raise ParamsError("focused", f"expected true or false, got {focused!r}")
    return focused


def parse_update_settings(params: Any) -> Any:
    """The partial settings object of crashGuard/updateSettings (validated by Settings.updated)."""
    return _object(params, {"settings"}).get("settings")


@functools.lru_cache(maxsize=1024)
def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@functools.lru_cache(maxsize=256)
def _field_names(cls: type) -> tuple[tuple[str, str], ...]:
    return tuple((f.name, camel(f.name)) for f in dataclasses.fields(cls))


SAFE_INT = 2**53 - 1  # Number.MAX_SAFE_INTEGER
MAX_TEXT = 4096  # characters in any string on the wire (PATH_MAX): a resume command's arguments are never cut
TEXT_LIMITS = {"lastEvent": 500, "exitCause": 500, "name": 255, "message": 2000, "command": 1000}
MAX_FRAME_BYTES = 64 * 1024  # a sample (and a runs list) on the wire, whatever a runs folder holds
_ENVELOPE_BYTES = 160  # {"jsonrpc": "2.0", "method": "crashGuard/sample", "params": ...} or a response's id


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def to_wire(value: Any, limit: int = MAX_TEXT) -> Any:
    """Dataclasses (and the dicts/lists inside them) as JSON-ready values with camelCase keys, safe for a
    JavaScript reader: non-finite numbers become null, ints saturate at +-SAFE_INT, strings are cut to their key's
    limit (TEXT_LIMITS, else MAX_TEXT; `limit` is the one of the key a value sits under).

    Dicts coming from other modules (e.g. a CleanupReport's `to_dict()`) are converted too, so every key on the
    wire is camelCase. Runs for every sample, so field names are cached per class.
    """
    if isinstance(value, str):
        return value if len(value) <= limit else _clip(value, limit)
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # NaN/Infinity are not JSON: null on the wire
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if -SAFE_INT <= value <= SAFE_INT else (SAFE_INT if value > 0 else -SAFE_INT)
    if isinstance(value, enum.Enum):
        return to_wire(value.value, limit)
    if type(value) is RunInfo:
        return _run_wire(value)[0]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # to_wire_dict / to_dict add derived fields (freed, rssFreed) that are properties, not fields.
        wire = getattr(value, "to_wire_dict", None) or getattr(value, "to_dict", None)
        if callable(wire):
            return _wire_dict(wire())
        return {key: to_wire(getattr(value, name), TEXT_LIMITS.get(key, MAX_TEXT))
                for name, key in _field_names(type(value))}
    if isinstance(value, dict):
        return _wire_dict(value)
    if isinstance(value, (list, tuple)):
        return [to_wire(v, limit) for v in value]
    return value


def _wire_dict(value: dict[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in value.items():
        key = camel(_clip(str(k), 255))
        out[key] = to_wire(v, TEXT_LIMITS.get(key, MAX_TEXT))
    return out


def wire_bytes(wire: Any) -> int:
    """The size of a to_wire value in a frame (pygls writes json.dumps' default form, ASCII only)."""
    return len(json.dumps(wire))


P = TypeVar("P")


def fit_runs(make: Callable[[list[RunInfo], int], P], runs: Sequence[RunInfo], omitted: int,
             limit: int = MAX_FRAME_BYTES) -> P:
    """`make(kept, omitted)`: a payload with the longest prefix of `runs` (live runs first, then the most relevant
    ended ones) that keeps its frame within `limit` bytes; the others are counted in `omitted`."""
    total = omitted + len(runs)
    size = wire_bytes(to_wire(make([], total))) + _ENVELOPE_BYTES  # the count's digits at their widest
    kept: list[RunInfo] = []
    for run in runs:
        size += run_wire_bytes(run) + 2  # ", " between elements
        if size > limit:
            break
        kept.append(run)
    return make(kept, total - len(kept))


_run_wires: dict[int, tuple[RunInfo, dict[str, Any], int]] = {}
_run_wires_lock = threading.Lock()


def _run_wire(run: RunInfo) -> tuple[dict[str, Any], int]:
    """A RunInfo on the wire and its size, remembered for the RunInfo objects the sampler keeps between samples
    (an ended run's): a sample lists them every second without converting them again. Never mutated."""
    with _run_wires_lock:
        cached = _run_wires.get(id(run))
    if cached is not None and cached[0] is run:
        return cached[1], cached[2]
    wire = {key: to_wire(getattr(run, name), TEXT_LIMITS.get(key, MAX_TEXT)) for name, key in _field_names(RunInfo)}
    size = wire_bytes(wire)
    with _run_wires_lock:
        if len(_run_wires) > 4096:
            _run_wires.clear()
        _run_wires[id(run)] = (run, wire, size)
    return wire, size


def run_wire_bytes(run: RunInfo) -> int:
    """A RunInfo's size on the wire."""
    return _run_wire(run)[1]


__all__ = [
    "ACTION", "ACTIONS", "CLEANUP", "CLIENT_NOTIFICATIONS", "END_LOCK_HOLDER", "HISTORY", "MAX_FRAME_BYTES", "METHODS",
    "NOTIFICATIONS", "PROCESS_DETAIL", "REQUESTS", "RUNS", "RUN_EVENT", "RUN_EVENTS", "SAFE_INT", "SAMPLE",
    "SERVER_BUSY", "STATUS", "STOP_MONITOR", "STOP_RUN", "UPDATE_SETTINGS", "WARNING", "WINDOW_STATE",
    "ActionParams", "CleanupParams", "CleanupResult", "EndHolderResult", "EndLockHolderParams", "Forecast", "GpuInfo",
    "GpuProcessInfo", "HistoryEvent", "HistoryPoint", "HistoryResult", "LockHolder", "ParamsError", "PressureInfo",
    "ProcessDetailResult", "ProcessInfo", "RamInfo", "RunCleanup", "RunEventParams", "RunInfo", "RunMemory",
    "RunsResult", "Sample", "StopResult", "StopRunParams", "ThresholdsInfo", "WarningParams", "camel", "fit_runs",
    "gpu_processes", "parse_empty", "parse_history", "parse_process_detail", "parse_stop_monitor",
    "parse_update_settings", "parse_window_state", "to_wire",
]
