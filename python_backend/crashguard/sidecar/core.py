"""The sidecar's core, free of pygls: take a sample, track levels with hysteresis, forecast, notice runs that
start/end/crash/hang, climb the escalation ladder, and answer the requests. Every method blocks (the server calls
`tick` on its sampling thread and the requests on its request pools); `emit(method, params)` must be safe to call
from any thread.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..monitor.gpu import GPUMonitor
from ..monitor.processes import detailed_memory
from ..runs.control import CleanupResult, StopResult, cleanup_runs, stop_run
from ..runs.lock_holders import end_lock_holder
from ..runs.registry import RunInfo, RunRecord
from ..runs.stall import HUNG
from ..runs.status import RunState
from ..runs.witness import Witness
from . import protocol as p
from .escalation import CLEANUP, STOP, Escalation, Observation, Timings
from .forecast import History, describe, next_crossing, seconds_to_limit
from .history import ACTION, LEVEL, REFUSED, RUN, TRAINING, HistoryEvent, HistoryPoint, SampleHistory
from .levels import Level, LevelTracker, Transition, worst
from .oom_watch import OomWatch
from .pressure import SYSTEM, PressureLevels, PressureTransition, forecast_message, run_resource
from .registries import AmbiguousRun, Registries
from .sampler import LISTED_ENDED_RUNS_REQUEST, Reading, Sampler
from .schedule import headroom, next_delay
from .settings import Settings

log = logging.getLogger(__name__)
Emit = Callable[[str, Any], None]
MAX_RUN_EVENTS = 20  # run events (and run notes) a tick sends at most: a folder of planted runs is not a flood
# Runs this monitor never saw alive that appear already ended (a run that failed between two samples, or files
# copied or planted): at most MAX_RUN_EVENTS such events per UNSEEN_WINDOW_SECONDS.
UNSEEN_WINDOW_SECONDS = 60.0


def exit_cause_text(cause: str | None) -> str:
    """A run's exit cause for a message that puts it in parentheses, without nesting them:
    "killed by signal 9 (SIGKILL)" -> "killed by signal 9, SIGKILL",
    "unknown (the process ended without recording why)" -> "cause unknown: the process ended without recording why".
    """
    if not cause:
        return "cause unknown"
    text = cause.strip()
    if text.startswith("unknown (") and text.endswith(")"):
        return f"cause unknown: {text[len('unknown ('):-1]}"
    if text == "unknown":
        return "cause unknown"
    return re.sub(r"\s*\(([^()]*)\)", r", \1", text)


_TERMINAL = frozenset(s.value for s in RunState if s.terminal)


def _run_key(record: RunRecord) -> tuple[str, int]:
    """A run's identity across runs directories: its folder and its rank."""
    return str(record.run_dir), record.rank


def _heaviest_text(heaviest: Sequence[p.ProcessInfo]) -> str:
    shown = ", ".join(f"{proc.name} ({proc.pid}) {proc.rss / 2**20:.0f} MiB" for proc in heaviest[:3])
    return f"; heaviest processes at the last sample: {shown}" if shown else ""


def thresholds_of(s: Settings) -> p.ThresholdsInfo:
    return p.ThresholdsInfo(s.ram_warning_percent, s.ram_critical_percent, s.vram_warning_percent,
                            s.vram_critical_percent, s.pressure_some_percent, s.pressure_full_percent,
                            s.pressure_seconds)


def _run_event_message(event: str, info: RunInfo) -> str:
    at = f" at step {info.step}" if info.step is not None else ""
    # Each rank of a torchrun run is its own process with its own events: say which.
    name = f"{info.name} rank {info.rank}/{info.world_size}" if info.world_size > 1 else info.name
    if event == "started":
        return f"Run {name} started (pid {info.pid})"
    if event == "crashed":
        return f"Run {name} stopped unexpectedly{at} ({exit_cause_text(info.exit_cause)})"
    if event == "failed":
        return f"Run {name} failed{at}: {info.exit_cause or info.last_event or 'no details'}"
    if event == "stopped":
        return f"Run {name} stopped{at}" + (f"; checkpoint {info.checkpoint}" if info.checkpoint else "")
    if event == "hung":
        silent = f"{info.stalled_seconds:.0f} s" if info.stalled_seconds is not None else "a long time"
        usual = f" (its steps take ~{info.step_seconds:.3g} s)" if info.step_seconds else ""
        return f"Run {name} may be hung{at}: no progress for {silent}{usual}"
    if event == "recovered":
        return f"Run {name} is making progress again{at}"
    return f"Run {name} finished{at}"


class Sidecar:
    def __init__(self, settings: Settings, emit: Emit, gpu: GPUMonitor | None = None,
                 history: SampleHistory | None = None, timings: Timings | None = None) -> None:
        self._settings = settings
        self._emit = emit
        self._registry = Registries(settings.runs_paths(), Witness())
        self._sampler = Sampler(self._registry, gpu)  # type: ignore[arg-type]  # Registries reads like a Registry
        self._sampler.pressure_seconds = settings.pressure_seconds
        self._tracker = LevelTracker()
        self._pressure = PressureLevels()
        self._oom = OomWatch()
        self._history: dict[str, History] = {}
        # RAM at the last sample: bytes of headroom (the sampling schedule) and the forecast seconds to its limit (the
        # ladder). RAM only: at its limit the kernel's OOM killer acts; VRAM running out raises in the process that
        # asked (the guarded step backs off), and a cleanup's empty_cache often brings it back, so it keeps its wait.
        self._ram_headroom: float | None = None
        self._ram_limit_in: float | None = None
        # Each run's last state, by (run folder, rank); a directory's first scan is a baseline, not events.
        self._run_states: dict[tuple[str, int], str] = {}
        self._baselined: set[Path] = set()
        self._unseen = (-float("inf"), 0)  # (window start, events sent in it) for runs never seen alive
        self._samples = history if history is not None else SampleHistory(settings.interval)  # report chart
        self._notes: dict[tuple[str, int], str | None] = {}  # each run's lastEvent (same keys), to log changes
        self._gpu_names: list[str] = []
        self._seq = 0
        self._lock = threading.Lock()
        self._escalation = Escalation(self._on_action, self._ladder_cleanup, self._ladder_stop, self._ladder_runs,
                                      timings)

    # -- settings --------------------------------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        return self._settings

    def apply_settings(self, settings: Settings) -> None:
        with self._lock:
            # A directory added later (a new workspace folder) gets its own baseline: no burst of "started".
            self._registry.watch(settings.runs_paths())
            self._settings = settings
            self._sampler.pressure_seconds = settings.pressure_seconds
        self._samples.set_interval(settings.interval)
        log.info("settings: %s", settings)

    # -- sampling --------------------------------------------------------------------------------------
    def tick(self) -> p.Sample:
        """Take the periodic sample, send it and whatever it implies (warnings, run events, actions)."""
        settings = self._settings
        reading = self._sampler.read(settings.top_processes, settings.hung_after_seconds, drain=True)
        watched = self._registry.settled_dirs  # after the look: every folder of these has been seen
        with self._lock:
            self._seq += 1
            reading = self._oom.explain(reading)  # a run the OOM killer took says so from this sample on
            sample, transitions = self._build(reading, settings, record=True)
            raw_events, baseline = self._run_events(reading.records, reading.runs, watched, reading.removed)
            events = [self._event_params(event, info) for event, info in raw_events]
            self._record(sample, reading, transitions, events, baseline)
            for refused in self._registry.take_refusals():  # already logged once (window/logMessage) by the registry
                self._samples.add_event(HistoryEvent(round(reading.time, 3), RUN, refused.message, level=REFUSED,
                                                     run=refused.run))
            self._oom.observe(reading)
        self._emit(p.SAMPLE, p.to_wire(sample))
        live = [r.name for r in reading.runs if r.alive]
        for t in transitions:
            self._emit(p.WARNING, p.to_wire(self._warning(t, live, reading.time, sample)))
        for params in events:
            self._emit(p.RUN_EVENT, p.to_wire(params))
        # Every sample, not on changes; every live run's pressure, listed in the sample or not.
        self._escalation.on_sample(self._observations(sample, reading.runs, settings), settings)
        return sample

    def next_delay(self) -> float:
        """Seconds until the sampling loop's next tick: the RAM headroom at the fastest plausible fill, within
        [0.1 s, the configured interval] (schedule.py)."""
        ram = self._history.get("RAM")
        return next_delay(self._ram_headroom, ram.fastest_rise() if ram else None, self._settings.interval)

    def _event_params(self, event: str, info: RunInfo) -> p.RunEventParams:
        message = _run_event_message(event, info)
        heaviest = self._oom.heaviest(info) if event == "crashed" else None
        if heaviest is None:
            return p.RunEventParams(event, info, message)
        procs = [p.ProcessInfo(t.pid, t.name, t.rss) for t in heaviest]
        return p.RunEventParams(event, info, message + _heaviest_text(procs), procs)

    def _observations(self, sample: p.Sample, runs: Sequence[RunInfo], s: Settings) -> list[Observation]:
        found = [Observation("RAM", Level(sample.ram.level), sample.ram.percent, s.ram_warning_percent,
                             s.ram_critical_percent, self._ram_limit_in)]
        for gpu in sample.gpus:
            if gpu.percent is not None:
                found.append(Observation(f"GPU {gpu.index}", Level(gpu.level), gpu.percent, s.vram_warning_percent,
                                         s.vram_critical_percent))
        # Pressure never reaches critical: with autoCleanup it asks for a cleanup round, it never stops a run.
        if sample.pressure is not None:
            found.append(Observation(SYSTEM, Level(sample.pressure.level), sample.pressure.some,
                                     s.pressure_some_percent, float("inf")))
        for run in runs:
            m = run.memory
            if m is not None and m.pressure_some is not None:
                level = Level.WARNING if m.pressure_some >= s.pressure_some_percent or (
                    m.pressure_full is not None and m.pressure_full >= s.pressure_full_percent) else Level.NORMAL
                found.append(Observation(run_resource(run.name, run.rank), level, m.pressure_some,
                                         s.pressure_some_percent, float("inf")))
        return found

    def status(self) -> p.Sample:
        """A sample taken now; it changes no level, history or event state."""
        settings = self._settings
        reading = self._sampler.read(settings.top_processes, settings.hung_after_seconds)
        with self._lock:
            return self._build(self._oom.explain(reading), settings, record=False)[0]

    def _level(self, resource: str, percent: float, warning: float, critical: float, record: bool,
               transitions: list[Transition | PressureTransition]) -> Level:
        if not record:
            return self._tracker.peek(resource, percent, warning, critical)
        level, change = self._tracker.update(resource, percent, warning, critical)
        if change is not None:
            transitions.append(change)
        return level

    def _forecast(self, resource: str, t: float, used: int, total: int, level: Level, warning: float,
                  critical: float, record: bool) -> p.Forecast | None:
        history = self._history.setdefault(resource, History())
        if record:
            history.add(t, float(used))
        trend = history.trend()
        crossing = next_crossing(trend, total, level, warning, critical) if trend else None
        if crossing is None:
            return None
        return p.Forecast(resource, crossing.level, crossing.seconds, crossing.bytes_per_second,
                          describe(resource, crossing))

    def _pressure_of(self, reading: Reading, s: Settings, record: bool, transitions: list[PressureTransition],
                     forecasts: list[p.Forecast]) -> tuple[p.PressureInfo | None, Level]:
        """The system's pressure (and each run group's) as levels, transitions and forecast lines."""
        worst_level = Level.NORMAL
        info = None
        sources = [(SYSTEM, reading.pressure)]
        sources += [(run_resource(name, rank), share) for (name, rank), share in reading.run_pressure.items()]
        for resource, share in sources:
            level, change = self._pressure.judge(resource, share, s.pressure_some_percent, s.pressure_full_percent,
                                                 record)
            if change is not None:
                transitions.append(change)
            worst_level = worst([worst_level, level])
            if share is None:
                continue
            if resource == SYSTEM:
                info = p.PressureInfo(share.some, share.full, share.seconds, share.avg10_some, share.avg10_full,
                                      level.value)
            line = forecast_message(resource, share, level, s.pressure_some_percent, s.pressure_full_percent,
                                    reading.ram.percent if resource == SYSTEM else None)
            if line:
                forecasts.append(p.Forecast(resource, Level.WARNING.value, 0.0, 0.0, line, kind="pressure"))
        if record:
            self._pressure.forget_except({r for r, _ in sources})
        return info, worst_level

    def _build(self, reading: Reading, s: Settings, record: bool
               ) -> tuple[p.Sample, list[Transition | PressureTransition]]:
        transitions: list[Transition | PressureTransition] = []
        forecasts: list[p.Forecast] = []
        ram = reading.ram
        ram_level = self._level("RAM", ram.percent, s.ram_warning_percent, s.ram_critical_percent, record,
                                transitions)
        fc = self._forecast("RAM", reading.time, ram.used, ram.total, ram_level, s.ram_warning_percent,
                            s.ram_critical_percent, record)
        if fc:
            forecasts.append(fc)
        gpus: list[p.GpuInfo] = []
        levels = [ram_level]
        for gpu in reading.gpus:
            name = f"GPU {gpu.index}"
            level = Level.NORMAL
            if gpu.percent is not None and gpu.total and gpu.used is not None:
                level = self._level(name, gpu.percent, s.vram_warning_percent, s.vram_critical_percent, record,
                                    transitions)
                fc = self._forecast(name, reading.time, gpu.used, gpu.total, level, s.vram_warning_percent,
                                    s.vram_critical_percent, record)
                if fc:
                    forecasts.append(fc)
            levels.append(level)
            gpus.append(p.GpuInfo(gpu.index, gpu.name, gpu.total, gpu.used, gpu.percent, gpu.utilization,
                                  level.value, p.gpu_processes(gpu)))
        pressure_transitions: list[PressureTransition] = []
        pressure, pressure_level = self._pressure_of(reading, s, record, pressure_transitions, forecasts)
        transitions.extend(pressure_transitions)
        levels.append(pressure_level)
        if record:
            present = {"RAM", *(f"GPU {g.index}" for g in reading.gpus)}
            self._tracker.forget_except(present)
            for gone in set(self._history) - present:
                del self._history[gone]
            self._ram_headroom = headroom(ram.used, ram.total, s.ram_critical_percent)
            self._ram_limit_in = seconds_to_limit(self._history["RAM"], ram.total)
        def sample_with(runs: list[RunInfo], omitted: int) -> p.Sample:
            return p.Sample(
                seq=self._seq, time=round(reading.time, 3), level=worst(levels).value,
                ram=p.RamInfo(ram.total, ram.available, ram.used, ram.percent, ram.swap_total, ram.swap_used,
                              ram.swap_percent, ram.physical_total, ram.limit_source, ram.cgroup_path,
                              ram_level.value),
                gpus=gpus, gpu_reason=reading.gpu_reason,
                top_processes=[p.ProcessInfo(t.pid, t.name, t.rss) for t in reading.top],
                runs=runs, forecasts=forecasts, thresholds=thresholds_of(s), cost_ms=reading.cost_ms,
                pressure=pressure, pressure_reason=reading.pressure_reason, runs_omitted=omitted,
            )

        # At most MAX_FRAME_BYTES on the wire, whatever a runs folder holds (contract C2).
        return p.fit_runs(sample_with, reading.shown, reading.omitted), transitions

    @staticmethod
    def _warning(t: Transition | PressureTransition, live: list[str], now: float,
                 sample: p.Sample | None = None) -> p.WarningParams:
        if isinstance(t, PressureTransition):
            ram = f", with RAM at {sample.ram.percent:.0f}%" if sample is not None and t.resource == SYSTEM else ""
            return p.WarningParams(t.resource, t.level.value, t.previous.value, t.percent, t.threshold_percent,
                                   t.message + ram, live, round(now, 3))
        if t.level is Level.NORMAL:
            message = f"{t.resource} back to normal at {t.percent:.0f}%"
        else:
            message = f"{t.resource} at {t.percent:.0f}% ({t.level.value} at {t.threshold_percent:g}%)"
        return p.WarningParams(t.resource, t.level.value, t.previous.value, t.percent, t.threshold_percent,
                               message, live, round(now, 3))

    def _run_events(self, records: list[RunRecord], runs: list[RunInfo], watched: tuple[Path, ...],
                    removed: Sequence[Path] = ()) -> tuple[list[tuple[str, RunInfo]], set[str]]:
        """The run events since the last tick, and the run folders of directories not looked at before (the first
        look at a directory is a baseline, not a burst of events). `records` are the live runs and those that
        changed (a reading's), `runs` the same as the client sees them (state `hung` included); every other run
        keeps its last state. `watched`: the directories the scan surely covered; one added meanwhile is
        baselined at the next tick. At most MAX_RUN_EVENTS events a tick: a flood is one log line."""
        states = {_run_key(r): info.state for r, info in zip(records, runs, strict=True)}
        previous = {key: self._run_states.get(key) for key in states}
        gone = {str(d) for d in removed}
        if gone:
            self._run_states = {k: v for k, v in self._run_states.items() if k[0] not in gone}
        self._run_states.update(states)
        watched_now = set(self._registry.dirs)
        if len(self._baselined - watched_now):  # a directory no longer watched: forget its runs
            kept = {str(d) for d in watched_now}
            self._run_states = {k: v for k, v in self._run_states.items() if os.path.dirname(k[0]) in kept}
        baselined = {str(d) for d in self._baselined}
        baseline = {key[0] for key in states if os.path.dirname(key[0]) not in baselined}
        self._baselined = (self._baselined | set(watched)) & watched_now
        events: list[tuple[str, RunInfo]] = []
        unseen_started, unseen_sent = self._unseen
        now = time.monotonic()
        if now - unseen_started >= UNSEEN_WINDOW_SECONDS:
            unseen_started, unseen_sent = now, 0
        skipped = 0
        for record, info in zip(records, runs, strict=True):
            key = _run_key(record)
            old, new = previous.get(key), states[key]
            if old == new or key[0] in baseline:
                continue
            was_live = old is not None and old not in _TERMINAL
            if new in _TERMINAL and not was_live and old is None:
                if unseen_sent >= MAX_RUN_EVENTS:
                    skipped += 1
                    continue
                unseen_sent += 1
            if new in _TERMINAL:
                events.append((new, info))
            elif not was_live:  # new, or a resume under the same name
                events.append(("started", info))
            elif new == HUNG:
                events.append(("hung", info))
            elif old == HUNG:
                events.append(("recovered", info))
        self._unseen = (unseen_started, unseen_sent)
        skipped += max(0, len(events) - MAX_RUN_EVENTS)
        if skipped:
            log.warning("%d more runs appeared, started or ended (not reported one by one)", skipped)
        return events[:MAX_RUN_EVENTS], baseline

    # -- history (the memory report) ---------------------------------------------------------------------
    def _record(self, sample: p.Sample, reading: Reading, transitions: list[Transition | PressureTransition],
                events: list[p.RunEventParams], baseline: set[str]) -> None:
        t = round(reading.time, 3)
        self._gpu_names = [g.name for g in sample.gpus]
        self._samples.add_point(HistoryPoint(t, sample.ram.percent, sample.ram.used,
                                             tuple(g.percent for g in sample.gpus)))
        for tr in transitions:
            self._samples.add_event(HistoryEvent(t, LEVEL, self._warning(tr, [], t, sample).message,
                                                 resource=tr.resource, level=tr.level.value))
        for params in events:
            self._samples.add_event(HistoryEvent(t, RUN, params.message, level=params.event, run=params.run.name))
        notes = {(r.dir, r.rank): r.last_event for r in reading.runs}
        added = 0
        for key, note in notes.items():
            # A run's own notes (OOM back-off, cleanup, checkpoint, ...); runs already there at start are a baseline.
            if note and key[0] not in baseline and self._notes.get(key) != note and added < MAX_RUN_EVENTS:
                added += 1
                run_dir, rank = key
                name = Path(run_dir).name
                who = f"{name} rank {rank}" if rank else name
                self._samples.add_event(HistoryEvent(t, TRAINING, f"{who}: {note[:500]}", run=name))
        gone = {str(d) for d in reading.removed}
        if gone:
            self._notes = {k: v for k, v in self._notes.items() if k[0] not in gone}
        self._notes.update(notes)  # every other run keeps its last note (it is not in every reading)

    def history(self, seconds: float | None) -> p.HistoryResult:
        s = self._settings
        points, events = self._samples.window(seconds, time.time())
        return p.HistoryResult(points, events, thresholds_of(s), list(self._gpu_names), s.sample_interval_ms,
                               self._samples.max_points)

    # -- escalation (its worker threads) ------------------------------------------------------------------
    def _on_action(self, action: str, reason: str, result: CleanupResult | StopResult) -> None:
        what = {CLEANUP: "automatic cleanup", STOP: "checkpoint-and-stop"}.get(action, "terminate")
        run = getattr(result, "run", None)
        self._samples.add_event(HistoryEvent(round(time.time(), 3), ACTION, f"{what}: {reason}", level=action,
                                             run=run))
        self._emit(p.ACTION, p.to_wire(p.ActionParams(action, reason, result)))

    def _ladder_cleanup(self, timeout: float) -> CleanupResult:
        # The runs only: the sidecar's own gc.collect gives back well under 1 MiB and holds the GIL for 50-190 ms,
        # delaying the very samples that watch the spike (the user's Emergency Cleanup still does both).
        registry = self._registry
        return cleanup_runs(registry.runs_dir, timeout=timeout, own_cleanup=False, registry=registry)

    def _ladder_stop(self, name: str, run_dir: str, timeout: float, urgent: bool) -> StopResult:
        return self.stop(name, timeout, run_dir, urgent)

    def _ladder_runs(self) -> list[RunInfo]:
        return self._sampler.read(0, self._settings.hung_after_seconds).runs  # with each run's VRAM

    # -- requests ----------------------------------------------------------------------------------------
    def runs(self) -> p.RunsResult:
        """Live runs and the most relevant ended ones (size-capped like a sample), each proven crash with the
        process that still holds its lock, if one does (Resume would fail with RunLocked)."""
        reading = self._sampler.read(0, self._settings.hung_after_seconds, ended=LISTED_ENDED_RUNS_REQUEST)
        shown = list(reading.shown)
        for index, (record, info) in enumerate(zip(reading.records, shown, strict=False)):
            if info.crash_proof is not None:
                shown[index] = dataclasses.replace(info, lock_holder=record.lock_holder())
        return p.fit_runs(lambda runs, omitted: p.RunsResult(runs, omitted), shown, reading.omitted)

    def cleanup(self, names: Sequence[str] | None, timeout: float) -> CleanupResult:
        registry = self._registry
        return cleanup_runs(registry.runs_dir, names=names, timeout=timeout, registry=registry)

    def stop(self, name: str, timeout: float, run_dir: str | None = None, urgent: bool = False) -> StopResult:
        """Checkpoint-and-stop the run `name` (in the directory of its run folder `run_dir`, when given)."""
        try:
            registry = self._registry.registry_for(name, run_dir)
        except AmbiguousRun as exc:
            return StopResult(name, False, "unknown", None, str(exc), False)
        if registry is None:
            where = run_dir or ", ".join(str(d) for d in self._registry.dirs) or "no runs directory"
            return StopResult(name, False, "unknown", None, f"no run named {name!r} in {where}", False)
        return stop_run(registry.runs_dir, name, timeout=timeout, registry=registry, urgent=urgent)

    def end_lock_holder(self, run_dir: str, pid: int, rank: int = 0, force: bool = False) -> p.EndHolderResult:
        """End the process that keeps the lock of the ended run in `run_dir` (its RunInfo.lockHolder), on proof
        (`force`: SIGKILL, after the user chose it)."""
        folder = Path(run_dir)
        registry = self._registry.owner(folder)
        if registry is None:
            return p.EndHolderResult(folder.name, pid, False, False, f"{run_dir} is not in a watched runs folder")
        return end_lock_holder(registry, registry.runs_dir / folder.name, pid, rank, force=force)

    def process_detail(self, pid: int) -> p.ProcessDetailResult | None:
        detail = detailed_memory(pid)
        if detail is None:
            return None
        return p.ProcessDetailResult(detail.pid, detail.rss, detail.uss, detail.pss, detail.swap)

    def close(self) -> None:
        self._escalation.close()
        self._sampler.close()
