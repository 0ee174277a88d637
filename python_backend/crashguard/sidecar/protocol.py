"""The sidecar's protocol: method names and payloads. One source of truth, documented in docs/protocol.md and
mirrored by hand in extension/src/protocol.ts (a test compares the method names).

Payloads are dataclasses with snake_case fields; `to_wire` turns them into the camelCase JSON the client sees.
Run payloads (RunInfo, CleanupResult, StopResult) live with the code that produces them in `runs/` and are
re-exported here, so this module lists every payload. Plain Python: no pygls, no torch.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import os
from dataclasses import dataclass, field
from typing import Any

from ..monitor.gpu import GpuReading
from ..runs.control import DEFAULT_CLEANUP_TIMEOUT, DEFAULT_STOP_TIMEOUT, CleanupResult, RunCleanup, StopResult
from ..runs.lock_holders import EndLockHolderResult, LockHolder, LockHoldersResult
from ..runs.registry import RunInfo, RunMemory
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
LOCK_HOLDERS = "crashGuard/lockHolders"
END_LOCK_HOLDER = "crashGuard/endLockHolder"

NOTIFICATIONS = (SAMPLE, WARNING, RUN_EVENT, ACTION)
REQUESTS = (STATUS, CLEANUP, RUNS, STOP_RUN, PROCESS_DETAIL, UPDATE_SETTINGS, HISTORY, LOCK_HOLDERS, END_LOCK_HOLDER)
METHODS = NOTIFICATIONS + REQUESTS

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
            raise ParamsError(str(key), f"unknown parameter (expected: {', '.join(sorted(allowed)) or 'none'})")
    return params


def _timeout(params: dict[str, Any], default_s: float) -> float:
    raw = params.get("timeoutMs")
    if raw is None:
        return default_s
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= 600_000:
        raise ParamsError("timeoutMs", f"expected an integer 0-600000, got {raw!r}")
    return raw / 1000.0


def _pid(params: dict[str, Any]) -> int:
    pid = params.get("pid")
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise ParamsError("pid", f"expected a positive integer, got {pid!r}")
    return pid


@dataclass(frozen=True)
class CleanupParams:
    runs: list[str] | None  # None = every live run
    timeout: float  # seconds

    @classmethod
    def parse(cls, params: Any) -> CleanupParams:
        obj = _object(params, {"runs", "timeoutMs"})
        runs = obj.get("runs")
        if runs is not None and (not isinstance(runs, list) or not all(isinstance(r, str) for r in runs)):
            raise ParamsError("runs", f"expected a list of run names, got {runs!r}")
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
        if not isinstance(run, str) or not run:
            raise ParamsError("run", f"expected a run name, got {run!r}")
        run_dir = obj.get("dir")
        if run_dir is not None and (not isinstance(run_dir, str) or not os.path.isabs(run_dir)):
            raise ParamsError("dir", f"expected the run's absolute folder (RunInfo.dir), got {run_dir!r}")
        return cls(run, _timeout(obj, DEFAULT_STOP_TIMEOUT), run_dir)


def _run_dir(params: dict[str, Any]) -> str:
    run_dir = params.get("dir")
    if not isinstance(run_dir, str) or not os.path.isabs(run_dir) or len(run_dir) > 4096:
        raise ParamsError("dir", f"expected the run's absolute folder (RunInfo.dir), got {run_dir!r}")
    return run_dir


def parse_lock_holders(params: Any) -> str:
    """crashGuard/lockHolders: the run's folder."""
    return _run_dir(_object(params, {"dir"}))


@dataclass(frozen=True)
class EndLockHolderParams:
    dir: str
    pid: int
    create_time: float  # as crashGuard/lockHolders listed it: a pid reused since is refused
    force: bool = False  # SIGKILL instead of SIGTERM

    @classmethod
    def parse(cls, params: Any) -> EndLockHolderParams:
        obj = _object(params, {"dir", "pid", "createTime", "force"})
        created = obj.get("createTime")
        if isinstance(created, bool) or not isinstance(created, (int, float)) or not math.isfinite(created) \
                or created <= 0:
            raise ParamsError("createTime", f"expected the holder's create time, got {created!r}")
        force = obj.get("force", False)
        if not isinstance(force, bool):
            raise ParamsError("force", f"expected true or false, got {force!r}")
        return cls(_run_dir(obj), _pid(obj), float(created), force)


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
        raise ParamsError("seconds", f"expected a number of seconds in (0, 86400], got {seconds!r}")
    return float(seconds)


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


def to_wire(value: Any) -> Any:
    """Dataclasses (and the dicts/lists inside them) as JSON-ready values with camelCase keys; non-finite numbers
    become null, so every frame is valid JSON for a strict parser.

    Dicts coming from other modules (e.g. a CleanupReport's `to_dict()`) are converted too, so every key on the
    wire is camelCase. Runs for every sample, so field names are cached per class.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # NaN/Infinity are not JSON: null on the wire
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # to_wire_dict / to_dict add derived fields (freed, rssFreed) that are properties, not fields.
        wire = getattr(value, "to_wire_dict", None) or getattr(value, "to_dict", None)
        if callable(wire):
            return {camel(k): to_wire(v) for k, v in wire().items()}
        return {key: to_wire(getattr(value, name)) for name, key in _field_names(type(value))}
    if isinstance(value, dict):
        return {camel(str(k)): to_wire(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_wire(v) for v in value]
    return value


__all__ = [
    "ACTION", "ACTIONS", "CLEANUP", "END_LOCK_HOLDER", "HISTORY", "LOCK_HOLDERS", "METHODS", "NOTIFICATIONS",
    "PROCESS_DETAIL", "REQUESTS", "RUNS", "RUN_EVENT", "RUN_EVENTS", "SAMPLE", "SERVER_BUSY", "STATUS", "STOP_RUN",
    "UPDATE_SETTINGS", "WARNING",
    "ActionParams", "CleanupParams", "CleanupResult", "EndLockHolderParams", "EndLockHolderResult", "Forecast",
    "GpuInfo", "GpuProcessInfo", "HistoryEvent", "HistoryPoint", "HistoryResult", "LockHolder", "LockHoldersResult",
    "ParamsError", "PressureInfo", "ProcessDetailResult", "ProcessInfo", "RamInfo", "RunCleanup", "RunEventParams",
    "RunInfo", "RunMemory", "RunsResult", "Sample", "StopResult", "StopRunParams", "ThresholdsInfo", "WarningParams",
    "camel", "gpu_processes", "parse_empty", "parse_history", "parse_lock_holders", "parse_process_detail",
    "parse_update_settings", "to_wire",
]
