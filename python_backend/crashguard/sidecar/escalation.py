"""The escalation ladder: what the sidecar does on its own when memory runs short.

- A resource at `warning` (or above), with `autoCleanup`: one cleanup round (a cleanup request to every live run;
  the sidecar's own heap has nothing worth its gc pause) per episode above normal.
- A resource at `critical`, with `criticalAction: checkpointAndStop`, climbs one rung after the other, each as
  soon as the previous one finished or timed out, re-judged on every sample (not only when a level changes):
  cleanup -> wait for its effect (a sample taken after the round) -> if still at or above critical,
  checkpoint-and-stop of the heaviest verified run, sent `urgent` (the run abandons the step in flight) -> SIGTERM
  when it does not answer within the stop timeout (inside `runs.control.stop_run`, to a verified run only).
  After the stop cooldown, a resource still critical climbs again (the next heaviest run).
- The waits for a cleanup and its effect are bounded by the forecast time to the limit (`Observation.
  seconds_to_limit`, forecast.seconds_to_limit; the core gives it for RAM, where the kernel's OOM killer waits):
  when the limit is forecast sooner than the wait would end (plus `stop_lead`, what a stop needs to take effect),
  the ladder goes on to the stop at once. A spike of 1 GB/s from 90 % of 24 GB reaches the kernel's limit in
  ~2.4 s, well inside the 5 s a cleanup would be waited for.

Each rung is reported once, as a `crashGuard/action` (`cleanup`, `checkpointAndStop`, `terminate`). Cooldowns
are kept per rung and per resource. A cleanup round in flight serves every resource that needs one meanwhile, so
a warning -> critical change during a round waits for that round (at most `critical_cleanup_timeout`) instead of
losing the stop.

`Ladder` holds the decisions: no I/O, no threads, the time is passed in, so it is unit-tested with a fake clock.
`Escalation` runs the steps it decides on a small pool of its own (never on the sampling thread) and feeds
their completion back.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..monitor.processes import tree_footprint
from ..runs.control import DEFAULT_CLEANUP_TIMEOUT, DEFAULT_STOP_TIMEOUT, CleanupResult, StopResult
from ..runs.registry import RunInfo
from .levels import Level
from .settings import Settings
from .workers import WorkerPool

log = logging.getLogger(__name__)


class Rung(str, enum.Enum):
    CLEANUP = "cleanup"
    STOP = "checkpointAndStop"
    TERMINATE = "terminate"  # SIGTERM to a run that did not answer a stop in time (reported, never planned)


# The wire names of crashGuard/action's `action`.
CLEANUP, STOP, TERMINATE = Rung.CLEANUP.value, Rung.STOP.value, Rung.TERMINATE.value


@dataclass(frozen=True)
class Timings:
    cleanup_timeout: float = DEFAULT_CLEANUP_TIMEOUT  # a round at warning: runs answer at their next step boundary
    critical_cleanup_timeout: float = 5.0  # at critical the ladder waits this long for a cleanup, then goes on
    settle: float = 0.5  # a cleanup's effect is judged on a sample taken at least this long after it ended
    # An urgent stop's checkpoint comes ~0.2 s after the request (the run's watcher polls at 5 Hz) plus its write:
    # a wait that would end less than this before the forecast limit is not waited out.
    stop_lead: float = 1.0
    stop_timeout: float = DEFAULT_STOP_TIMEOUT  # then SIGTERM
    cleanup_cooldown: float = 30.0  # per resource: at most one round per this long
    stop_cooldown: float = 60.0  # per resource: after a stop, this long before the next run is stopped


@dataclass(frozen=True)
class Observation:
    """What one sample says about one resource."""

    resource: str  # "RAM", "GPU 0", ...
    level: Level  # with hysteresis
    percent: float
    warning: float  # the thresholds, %
    critical: float
    seconds_to_limit: float | None = None  # when use reaches the limit (100 %) at its current rise; None: not rising


@dataclass(frozen=True)
class Step:
    rung: Rung  # CLEANUP or STOP
    resource: str  # the resource that asked for it (a cleanup round also serves others, see Ladder)
    reason: str
    timeout: float
    urgent: bool = False


class Position(enum.Enum):
    IDLE = "idle"
    CLEANING = "cleaning"  # a cleanup round serving this resource is in flight
    SETTLING = "settling"  # waiting for a sample that shows the round's effect
    STOPPING = "stopping"  # a checkpoint-and-stop for this resource is in flight
    DONE = "done"  # stopped a run; waiting out the stop cooldown


LIMIT_MENTION_SECONDS = 60.0  # a reason at critical names the forecast limit when it is this close


def _reason(o: Observation) -> str:
    threshold = o.critical if o.level is Level.CRITICAL else o.warning
    limit = f", full in ~{o.seconds_to_limit:.1f} s" if o.seconds_to_limit is not None and \
        o.level is Level.CRITICAL and o.seconds_to_limit < LIMIT_MENTION_SECONDS else ""
    return f"{o.resource} {o.level.value} ({o.percent:.0f}%" + (
        f" >= {threshold:g}%" if o.percent >= threshold else "") + limit + ")"


class Ladder:
    """The ladder's decisions for every resource. Not thread-safe (Escalation holds a lock around it)."""

    def __init__(self, timings: Timings | None = None) -> None:
        self.timings = timings or Timings()
        self._position: dict[str, Position] = {}
        self._at: dict[str, float] = {}  # CLEANING: give up waiting at; SETTLING: judge from
        self._cleaned: set[str] = set()  # served by a cleanup round since the resource left normal
        self._taken: dict[tuple[Rung, str], float] = {}  # when a rung was last taken for a resource (cooldowns)
        self._cleanup: Step | None = None  # the round in flight
        self._serving: set[str] = set()  # the resources that round serves
        self._cleanup_done: dict[str, float] = {}  # when the last round serving a resource ended
        self._stop: Step | None = None  # the stop in flight (one at a time)

    def position(self, resource: str) -> Position:
        return self._position.get(resource, Position.IDLE)

    @property
    def in_flight(self) -> list[Step]:
        return [s for s in (self._cleanup, self._stop) if s is not None]

    # -- decisions ---------------------------------------------------------------------------------------
    def on_sample(self, observations: list[Observation], settings: Settings, now: float) -> list[Step]:
        """The steps to start now, given a fresh sample of every resource."""
        present = {o.resource for o in observations}
        for gone in set(self._position) - present:
            del self._position[gone]
            self._cleaned.discard(gone)
        wanted: list[Observation] = []  # resources that need a new cleanup round
        stops: list[Step] = []
        for o in observations:
            self._decide(o, settings, now, wanted, stops)
        steps = stops  # at most one: a stop at a time, another resource is judged again on the next sample
        for stop in stops:
            self._stop = stop
            self._taken[(Rung.STOP, stop.resource)] = now
        if wanted:
            critical = any(o.level is Level.CRITICAL for o in wanted)
            t = self.timings
            round_ = Step(Rung.CLEANUP, wanted[0].resource, ", ".join(_reason(o) for o in wanted),
                          t.critical_cleanup_timeout if critical else t.cleanup_timeout)
            self._cleanup = round_
            for o in wanted:
                self._taken[(Rung.CLEANUP, o.resource)] = now
            steps.insert(0, round_)
        return steps

    def _decide(self, o: Observation, s: Settings, now: float, wanted: list[Observation],
                stops: list[Step]) -> None:
        r = o.resource
        if o.level is Level.NORMAL:
            self._position[r] = Position.IDLE
            self._cleaned.discard(r)
            return
        if not (o.level is Level.CRITICAL and s.critical_action == "checkpointAndStop"):
            self._position[r] = Position.IDLE  # below critical (or no critical action): the ladder starts over
            if s.auto_cleanup and r not in self._cleaned:
                self._ask_cleanup(o, now, wanted, critical=False)
            return
        pos = self.position(r)
        if pos is Position.IDLE:
            pos = self._ask_cleanup(o, now, wanted, critical=True)
        if pos is Position.CLEANING:
            if r not in self._serving:  # the round ended: judge its effect on a later sample
                pos, self._at[r] = Position.SETTLING, self._cleanup_done.get(r, now) + self.timings.settle
            elif now >= self._at[r]:  # the round is taking too long (runs with long steps): go on without it
                log.info("%s critical: cleanup not answered within %g s, going on", r,
                         self.timings.critical_cleanup_timeout)
                pos, self._at[r] = Position.SETTLING, now
            elif self._limit_first(o, self._at[r] + self.timings.settle - now):
                pos, self._at[r] = Position.SETTLING, now
        if pos is Position.SETTLING and now < self._at[r] and self._limit_first(o, self._at[r] - now):
            self._at[r] = now
        if pos is Position.SETTLING and now >= self._at[r] and o.percent >= o.critical:
            # Still at or above critical after the cleanup (a dip into the hysteresis band waits here).
            last = self._taken.get((Rung.STOP, r))
            if self._stop is None and not stops and (last is None or now - last >= self.timings.stop_cooldown):
                stops.append(Step(Rung.STOP, r, _reason(o), self.timings.stop_timeout, urgent=True))
                self._position[r] = Position.STOPPING
                return
        if pos is Position.STOPPING and (self._stop is None or self._stop.resource != r):
            pos = Position.DONE  # the stop ended
        if pos is Position.DONE:
            last = self._taken.get((Rung.STOP, r), -float("inf"))
            if now - last >= self.timings.stop_cooldown:
                pos = Position.IDLE  # still critical after the cooldown: climb again from the next sample
        self._position[r] = pos

    def _limit_first(self, o: Observation, wait: float) -> bool:
        """Whether the limit is forecast before a wait of `wait` s would end and a stop could take effect."""
        if o.seconds_to_limit is None or o.seconds_to_limit >= wait + self.timings.stop_lead:
            return False
        log.info("%s critical: the limit is forecast in %.1f s, sooner than the cleanup's effect can be judged "
                 "(%.1f s): going on to the stop now", o.resource, o.seconds_to_limit, max(0.0, wait))
        return True

    def _ask_cleanup(self, o: Observation, now: float, wanted: list[Observation], critical: bool) -> Position:
        """The cleanup rung for `o.resource`: join the round in flight, count a recent one, or ask for a new one."""
        r = o.resource
        self._cleaned.add(r)
        if critical:
            self._at[r] = now + self.timings.critical_cleanup_timeout
        if r in self._serving:  # a round in flight already serves it
            return Position.CLEANING
        last = self._taken.get((Rung.CLEANUP, r))
        if last is not None and now - last < self.timings.cleanup_cooldown:
            # A round served this resource moments ago (at warning, or before a dip): its effect is already in.
            self._at[r] = self._cleanup_done.get(r, now) + self.timings.settle
            return Position.SETTLING
        if self._cleanup is not None:  # a round for another resource is in flight: it serves this one too
            self._serving.add(r)
            self._taken[(Rung.CLEANUP, r)] = now
            return Position.CLEANING
        wanted.append(o)
        self._serving.add(r)  # the round on_sample starts for `wanted`
        return Position.CLEANING

    # -- feedback ----------------------------------------------------------------------------------------
    def finished(self, step: Step, now: float) -> None:
        """A step ended (answered, timed out or failed)."""
        if step.rung is Rung.CLEANUP and step is self._cleanup:
            for r in self._serving:
                self._cleanup_done[r] = now
            self._cleanup, self._serving = None, set()
        elif step.rung is Rung.STOP and step is self._stop:
            self._stop = None


# -- the victim ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Victim:
    run: str
    used: int  # bytes of the resource in trouble, summed over the run's ranks
    measure: str  # "PSS" (RAM: the process trees, each page counted once) or "VRAM"
    dir: str = ""  # the run's folder (RunInfo.dir): a namesake in another runs directory is another run

    def describe(self) -> str:
        return f"{self.run} used the most ({self.measure} {self.used / 2**30:.2f} GiB)"


def tree_pss(pid: int) -> int | None:
    footprint = tree_footprint(pid)
    return footprint.pss if footprint else None


def heaviest(runs: list[RunInfo], resource: str,
             footprint: Callable[[int], int | None] = tree_pss) -> Victim | None:
    """The live run using most of `resource`. RAM: PSS of each rank's process tree (a run and its forked
    DataLoader workers share pages; summed RSS would count them once per worker), measured now: it reads every
    mapping, so only when a victim is chosen, never on a sample. A GPU: NVML's VRAM of each rank."""
    used: dict[tuple[str, str], int] = {}  # by (run folder, name): ranks of one run add up, namesakes do not
    for info in runs:
        if not info.alive or info.pid is None:
            continue
        figure = footprint(info.pid) if resource == "RAM" else info.vram or None
        if figure is None:
            continue  # gone since, unreadable (not ours to stop anyway), or using none of this GPU
        key = (info.dir, info.name)
        used[key] = used.get(key, 0) + figure
    if not used:
        return None
    run_dir, name = max(used, key=lambda k: used[k])
    return Victim(name, used[(run_dir, name)], "PSS" if resource == "RAM" else "VRAM", run_dir)


# -- running the steps ---------------------------------------------------------------------------------------
Report = Callable[[str, str, "CleanupResult | StopResult"], None]


class Escalation:
    """The ladder, wired to real actions: decisions on the sampling thread (cheap), actions on two workers of its
    own (a cleanup round and a stop can be in flight together; neither can delay a sample or a request)."""

    def __init__(self, report: Report, cleanup: Callable[[float], CleanupResult],
                 stop: Callable[[str, str, float, bool], StopResult], runs: Callable[[], list[RunInfo]],
                 timings: Timings | None = None, clock: Callable[[], float] = time.monotonic,
                 footprint: Callable[[int], int | None] = tree_pss) -> None:
        self._report = report  # (action, reason, result) -> crashGuard/action
        self._cleanup = cleanup  # (timeout) -> CleanupResult
        self._stop = stop  # (run, run folder, timeout, urgent) -> StopResult
        self._runs = runs
        self._clock = clock
        self._footprint = footprint
        self._ladder = Ladder(timings)
        self._lock = threading.Lock()
        self._pool = WorkerPool("escalation", workers=2, queue_limit=2)

    @property
    def ladder(self) -> Ladder:
        return self._ladder

    def on_sample(self, observations: list[Observation], settings: Settings) -> list[Step]:
        """Decide on a fresh sample and start what was decided; returns at once."""
        with self._lock:
            steps = self._ladder.on_sample(observations, settings, self._clock())
        for step in steps:
            try:
                self._pool.submit(self._run, step)
            except RuntimeError:  # closed (shutting down)
                self._finished(step)
        return steps

    def _finished(self, step: Step) -> None:
        with self._lock:
            self._ladder.finished(step, self._clock())

    def _run(self, step: Step) -> None:
        try:
            if step.rung is Rung.CLEANUP:
                self._report(CLEANUP, step.reason, self._cleanup(step.timeout))
            else:
                self._stop_heaviest(step)
        except Exception:  # an action failing must not kill the worker or the sidecar
            log.exception("escalation step %s failed", step.rung.value)
        finally:
            self._finished(step)

    def _stop_heaviest(self, step: Step) -> None:
        victim = heaviest(self._runs(), step.resource, self._footprint)
        if victim is None:
            log.warning("%s: no guarded run uses it, nothing to stop", step.reason)
            return
        result = self._stop(victim.run, victim.dir, step.timeout, step.urgent)
        self._report(STOP, f"{step.reason}; {victim.describe()}", result)
        if result.signalled:  # it did not answer in time: stop_run sent SIGTERM to the verified process
            self._report(TERMINATE, f"{victim.run} did not answer checkpoint-and-stop within {step.timeout:g} s: "
                                    "sent SIGTERM", result)

    def close(self) -> None:
        self._pool.close()
