"""The exact cause of a run's death, seen from the sidecar: was it the kernel's OOM killer?

The supervisor of `crashguard train` knows the signal and records the cause itself (runs/supervisor.py). A run
of the user's own loop (RunHook, an integration) has no supervisor: nobody records why it vanished. The sidecar
keeps, for every live run, the OOM-kill counter of the memory cgroup the run is in and the system's, as of the
last sample that saw it alive; when the next sample finds it dead with no recorded cause, a counter that rose in
between says the kernel's OOM killer did it (runs/oom_cause.py: the run's own group counting a kill is the
kernel's word; only the system's counter rising is "probably"). The verdict is kept for the rest of the sidecar's
life (it is not written into the run's files: only the run writes those) with the heaviest processes of the last
sample before the death, which the crash prompt and the report show.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..monitor.memcg import oom_kills_of
from ..monitor.processes import ProcessMemory
from ..runs.oom_cause import OomCounters, is_oom_kill, oom_cause
from ..runs.registry import UNKNOWN_EXIT, RunInfo
from ..runs.status import RunState
from .sampler import Reading, RunGroup

_Key = tuple[str, int, int]  # run folder, rank, pid
MAX_CAUSES = 256


@dataclass(frozen=True)
class _Alive:
    pid: int
    group: RunGroup | None
    before: OomCounters  # the counters KEEP_SAMPLES samples ago (or when first seen alive)


# A victim of the OOM killer can still look alive for a moment after the kill was counted (it is being reaped), so
# the counters are compared with the ones two samples before its death, not only the last one.
KEEP_SAMPLES = 2


class OomWatch:
    """Not thread-safe: the sidecar calls it under its own lock."""

    def __init__(self) -> None:
        self._alive: dict[tuple[str, int], _Alive] = {}
        self._history: dict[tuple[str, int], tuple[tuple[int, OomCounters], ...]] = {}
        self._causes: dict[_Key, str] = {}
        self._heaviest: dict[_Key, list[ProcessMemory]] = {}
        self._last_top: list[ProcessMemory] = []

    def explain(self, reading: Reading) -> Reading:
        """`reading` with the cause of each run that died unexplained since the last sample (or earlier)."""
        runs: list[RunInfo] = []
        for info in reading.runs:
            if info.pid is None:
                runs.append(info)
                continue
            if info.state != RunState.CRASHED.value or info.exit_cause != UNKNOWN_EXIT:
                runs.append(info)  # alive, ended cleanly, or its cause recorded (by its supervisor): that stands
                continue
            key = (info.dir, info.rank, info.pid)
            cause = self._causes.get(key) or self._judge(info, reading)
            runs.append(dataclasses.replace(info, exit_cause=cause) if cause else info)
        # A reading lists only some ended runs: a cause is kept while its run folder exists (bounded: the oldest go).
        gone = {str(d) for d in reading.removed}
        for key in [k for k in self._causes if k[0] in gone] + list(self._causes)[:-MAX_CAUSES]:
            self._causes.pop(key, None)
            self._heaviest.pop(key, None)
        return dataclasses.replace(reading, runs=runs)

    def _judge(self, info: RunInfo, reading: Reading) -> str | None:
        assert info.pid is not None
        seen = self._alive.pop((info.name, info.rank), None)
        if seen is None or seen.pid != info.pid:
            return None  # not seen alive by this sidecar: nothing to compare
        group = seen.group
        before = seen.before
        after = OomCounters(oom_kills_of(group.group) if group else None, reading.system_oom_kills)
        cause = oom_cause(before, after, sigkill=None)
        if cause is not None:
            key = (info.dir, info.rank, info.pid)
            self._causes[key] = cause
            self._heaviest[key] = list(self._last_top)
        return cause

    def heaviest(self, info: RunInfo) -> list[ProcessMemory] | None:
        """For a run killed by the OOM killer (judged here or recorded by its supervisor): the heaviest processes of
        the last sample before its death."""
        if not is_oom_kill(info.exit_cause) or info.pid is None:
            return None
        return self._heaviest.get((info.dir, info.rank, info.pid), list(self._last_top))

    def observe(self, reading: Reading) -> None:
        """After a sample: the counters of every live run, and the sample's heaviest processes."""
        alive: dict[tuple[str, int], _Alive] = {}
        for info in reading.runs:
            if not info.alive or info.pid is None:
                continue
            key = (info.name, info.rank)
            group = reading.run_groups.get(key)
            now = OomCounters(group.oom_kills if group else None, reading.system_oom_kills)
            history = self._history.get(key, ())
            if history and history[0][0] != info.pid:
                history = ()  # another process under this name (a resume)
            history = (*history, (info.pid, now))[-KEEP_SAMPLES:]
            self._history[key] = history
            alive[key] = _Alive(info.pid, group, history[0][1])
        for gone in set(self._history) - set(alive):
            del self._history[gone]
        self._alive = alive
        if reading.top:
            self._last_top = list(reading.top)
