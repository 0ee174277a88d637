"""One full reading of the machine for the sidecar: RAM, memory pressure, GPUs, the heaviest processes and the
guarded runs (with the memory cgroup each one is in, and the OOM-kill counters that tell how a run died).

Kept cheap for a 1 s tick: the process list (a pass over /proc) is refreshed only every few seconds, and a
missing NVML is retried once a minute rather than on every tick. Pressure and cgroups are a few small files.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from ..monitor.cgroup import CgroupWatch
from ..monitor.gpu import GPUMonitor, GpuReading
from ..monitor.host import RamReading, read_ram
from ..monitor.memcg import MemcgDir, MemcgReading, memcg_of, read_memcg, read_memcg_quick, system_oom_kills
from ..monitor.pressure import PressureWindow, StallShare, psi_unavailable_reason, read_psi
from ..monitor.processes import ProcessMemory, display_name, top_processes
from ..runs.registry import Registry, RunInfo, RunMemory, RunRecord, Snapshot
from ..runs.stall import DEFAULT_FLOOR_SECONDS
from ..runs.status import RunState

LISTED_ENDED_RUNS = 8  # ended runs a sample lists at most (live runs all; the rest are counted, runs_omitted)
LISTED_ENDED_RUNS_REQUEST = 64  # ... and crashGuard/runs (both within the frame cap, protocol.fit_runs)
INFO_REFRESH_SECONDS = 60.0  # an ended run's RunInfo is kept this long (only its crash proof's age changes)
TOP_REFRESH_SECONDS = 10.0
GPU_RETRY_SECONDS = 60.0
GROUP_LOCATE_SECONDS = 30.0  # a run's cgroup is looked up again this often (it does not move in practice)
GROUP_FULL_SECONDS = 5.0  # limits and file cache of a run's cgroup are read whole this often; use and counters always


def _named(proc: ProcessMemory) -> ProcessMemory:
    """`proc` with its display name (two small /proc reads; only for the few listed processes)."""
    try:
        ps = psutil.Process(proc.pid)
        with ps.oneshot():
            cmdline = ps.cmdline()
            try:
                exe = ps.exe()
            except (psutil.AccessDenied, OSError):
                exe = None  # another user's process: cmdline is readable, the exe link is not
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return proc
    name = display_name(proc.name, exe, cmdline)
    return proc if name == proc.name else dataclasses.replace(proc, name=name)


@dataclass
class _GroupSeen:
    """A live run's memory cgroup as last read (cached between samples: reading it whole is 7 small files)."""

    group: MemcgDir | None
    located_at: float
    reading: MemcgReading | None = None
    full_at: float = -float("inf")


@dataclass(frozen=True)
class RunGroup:
    """The memory cgroup a live run is in, with its OOM-kill counter at this reading (for the cause of a death)."""

    pid: int
    group: MemcgDir
    oom_kills: int | None


@dataclass(frozen=True)
class Reading:
    """`records`/`runs` (same order): every live run, then the most relevant ended runs (the first `listed` are
    the list a sample shows, before its size cap), then runs that changed since the last drained reading (for
    run events). `omitted`: ended runs not among them."""

    time: float
    ram: RamReading
    gpus: list[GpuReading]
    gpu_reason: str | None
    top: list[ProcessMemory]
    records: list[RunRecord]
    runs: list[RunInfo]
    cost_ms: float
    pressure: StallShare | None = None  # the system's
    pressure_reason: str | None = None  # why there is no pressure reading at all
    system_oom_kills: int | None = None
    run_groups: dict[tuple[str, int], RunGroup] = dataclasses.field(default_factory=dict)
    run_pressure: dict[tuple[str, int], StallShare] = dataclasses.field(default_factory=dict)
    listed: int = -1  # -1: all of `runs`
    omitted: int = 0
    removed: list[Path] = dataclasses.field(default_factory=list)  # run folders gone since the last drained reading

    @property
    def shown(self) -> list[RunInfo]:
        return self.runs if self.listed < 0 else self.runs[:self.listed]


class Sampler:
    def __init__(self, registry: Registry, gpu: GPUMonitor | None = None,
                 top_refresh: float = TOP_REFRESH_SECONDS) -> None:
        self.registry = registry
        self._gpu = gpu or GPUMonitor()
        self._top_refresh = top_refresh
        self._top: list[ProcessMemory] = []
        self._top_at = -float("inf")
        self._top_count = -1
        self._gpu_retry_at = 0.0
        self._cgroup = CgroupWatch()
        self.pressure_seconds = 10.0  # the window of the pressure shares (the sidecar's pressureSeconds)
        self._pressure = PressureWindow()
        self._run_pressure: dict[str, PressureWindow] = {}  # by the run group's pressure file
        self._groups: dict[tuple[int, float], _GroupSeen] = {}  # by (pid, create time) of each live run
        self._infos: dict[int, tuple[RunRecord, RunInfo, float]] = {}  # ended runs' RunInfo, by id of the record
        self._lock = threading.Lock()

    def _gpus(self, now: float) -> list[GpuReading]:
        if now < self._gpu_retry_at:
            return []
        gpus = self._gpu.read()
        if not gpus and self._gpu.reason:
            self._gpu_retry_at = now + GPU_RETRY_SECONDS
        return gpus

    def _top_processes(self, count: int, now: float) -> list[ProcessMemory]:
        if count <= 0:
            return []
        if count != self._top_count or now - self._top_at >= self._top_refresh:
            self._top = [_named(t) for t in top_processes(count)]
            self._top_at, self._top_count = now, count
        return self._top

    def _window(self, key: str, seconds: float) -> PressureWindow:
        window = self._run_pressure.get(key) if key else self._pressure
        if window is None:
            window = self._run_pressure[key] = PressureWindow(seconds)
        window.set_window(seconds)
        return window

    def _run_memory(self, records: list[RunRecord], runs: list[RunInfo], now: float, seconds: float
                    ) -> tuple[list[RunInfo], dict[tuple[str, int], RunGroup], dict[tuple[str, int], StallShare]]:
        """Each live run's memory cgroup, from the kernel's /proc/<pid>/cgroup: shown when it has a limit or a high
        mark; its OOM-kill counter kept in any case."""
        groups: dict[tuple[str, int], RunGroup] = {}
        shares: dict[tuple[str, int], StallShare] = {}
        out: list[RunInfo] = []
        seen: set[str] = set()
        live: set[tuple[int, float]] = set()
        for record, info in zip(records, runs, strict=True):
            group, reading = None, None
            if info.alive and info.pid is not None:
                process = (info.pid, record.status.create_time)
                live.add(process)
                group, reading = self._group_reading(process, now)
            if group is None or reading is None or info.pid is None:
                out.append(info)
                continue
            groups[(info.name, info.rank)] = RunGroup(info.pid, group, reading.oom_kills)
            share = None
            if reading.pressure is not None and group.pressure is not None:
                pressure_file = str(group.pressure)
                seen.add(pressure_file)
                share = self._window(pressure_file, seconds).add(now, reading.pressure)
                if share is not None:
                    shares[(info.name, info.rank)] = share
            if reading.max is None and reading.high is None:
                out.append(info)  # in a group without limits (a login session's): nothing of its own to show
                continue
            memory = RunMemory(
                cgroup=reading.path, version=reading.version, current=reading.current,
                working_set=reading.working_set, max=reading.max, high=reading.high,
                high_events=reading.high_events, max_events=reading.max_events, oom_kills=reading.oom_kills,
                over_high=record.status.memory_over_high, pressure_some=share.some if share else None,
                pressure_full=share.full if share else None)
            out.append(dataclasses.replace(info, memory=memory))
        for gone in set(self._run_pressure) - seen:
            del self._run_pressure[gone]
        for ended in set(self._groups) - live:
            del self._groups[ended]
        return out, groups, shares

    def _group_reading(self, key: tuple[int, float], now: float) -> tuple[MemcgDir | None, MemcgReading | None]:
        """A live run's memory cgroup and its figures: located every GROUP_LOCATE_SECONDS, read whole every
        GROUP_FULL_SECONDS, in between only use, counters and pressure (read_memcg_quick)."""
        seen = self._groups.get(key)
        if seen is None or now - seen.located_at >= GROUP_LOCATE_SECONDS:
            group = memcg_of(key[0])
            if seen is None or group != seen.group:
                seen = _GroupSeen(group, now)
            seen.located_at = now
            self._groups[key] = seen
        if seen.group is None:
            return None, None
        if seen.reading is None or now - seen.full_at >= GROUP_FULL_SECONDS:
            seen.reading, seen.full_at = read_memcg(seen.group), now
        else:
            seen.reading = read_memcg_quick(seen.group, seen.reading)
        return seen.group, seen.reading

    def read(self, top_count: int, hung_floor: float = DEFAULT_FLOOR_SECONDS, drain: bool = False,
             ended: int = LISTED_ENDED_RUNS) -> Reading:
        """One reading, with every live run and the `ended` most relevant ended ones. `drain`: the sampling
        thread's, whose readings carry what changed since its last one (a request's never takes those away)."""
        with self._lock:
            started = time.perf_counter()
            now = time.monotonic()
            ram = read_ram(cgroup=self._cgroup.read)
            psi = read_psi()
            seconds = self.pressure_seconds
            pressure = self._window("", seconds).add(now, psi) if psi is not None else None
            gpus = self._gpus(now)
            vram_by_pid: dict[int, int] = {}
            for gpu in gpus:
                for proc in gpu.processes:
                    if proc.used is not None:
                        vram_by_pid[proc.pid] = vram_by_pid.get(proc.pid, 0) + proc.used
            snap = self.registry.snapshot(ended, drain)
            wall = time.time()
            records, runs, listed = self._describe(snap, vram_by_pid, hung_floor, wall)
            runs, groups, shares = self._run_memory(records, runs, now, seconds)
            # The machine's OOM-kill count matters only around a run that lives or has just died unexplained.
            watched = any(not RunState(r.status.state).terminal for r in records)
            top = self._top_processes(top_count, now)
            return Reading(time=wall, ram=ram, gpus=gpus, gpu_reason=None if gpus else self._gpu.reason,
                           top=top, records=records, runs=runs,
                           cost_ms=round((time.perf_counter() - started) * 1000, 3),
                           pressure=pressure, pressure_reason=None if psi is not None else psi_unavailable_reason(),
                           system_oom_kills=system_oom_kills() if watched else None, run_groups=groups,
                           run_pressure=shares, listed=listed, omitted=snap.ended - len(snap.recent),
                           removed=snap.removed)

    def _describe(self, snap: Snapshot, vram_by_pid: dict[int, int], hung_floor: float, wall: float
                  ) -> tuple[list[RunRecord], list[RunInfo], int]:
        """The records a reading looks at (live, the listed ended ones, then the changed ones) with their RunInfo.
        An ended run's RunInfo is kept between readings; a record whose RunInfo cannot be made (a fault) is taken
        out and its folder refused, alone."""
        records: list[RunRecord] = []
        runs: list[RunInfo] = []
        seen: set[int] = set()
        listed = 0
        kept: dict[int, tuple[RunRecord, RunInfo, float]] = {}
        for part, record in [*((0, r) for r in snap.live), *((1, r) for r in snap.recent),
                             *((2, r) for r in snap.changed)]:
            if id(record) in seen:
                continue
            seen.add(id(record))
            cached = self._infos.get(id(record))
            if cached is not None and cached[0] is record and wall - cached[2] < INFO_REFRESH_SECONDS:
                info = cached[1]
                kept[id(record)] = cached
            else:
                try:
                    info = record.info(vram_by_pid, hung_floor, wall)
                except Exception as exc:  # a fault in one run's data stays with that run
                    self.registry.refuse(record, f"could not be described: {type(exc).__name__}: {str(exc)[:200]}")
                    continue
                if not record.verdict.alive:
                    kept[id(record)] = (record, info, wall)
            records.append(record)
            runs.append(info)
            listed += part < 2
        self._infos = kept
        return records, runs, listed

    def close(self) -> None:
        self._gpu.close()
