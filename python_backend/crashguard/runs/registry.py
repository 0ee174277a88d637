"""Discover the training runs registered under the runs directory and tell which are alive, finished or crashed.

A run writes `runs/<name>/status.json` (other ranks `status.rankN.json`). Every file is read through the checks
of runs/files.py (no symlink, ours and private, size cap, strict JSON) and runs/status.py (types, finite
numbers, ranges), and every live claim is proved (runs/liveness.py: create time, user, the run's lock). What fails
a check is not a run: it is never alive and never controlled, and it is reported once (a log warning, which the
sidecar forwards to the client, and `take_refusals()` for its history) with the reason.

Files are re-parsed only when they change (inode, mtime, ctime, size), so a scan every second costs a directory
listing plus one process check per live run.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..guard.oom_score import read_oom_score_adj
from ..monitor.processes import tree_rss
from .files import RefusedFile, open_checked_dir, read_checked_json
from .liveness import Verdict, verify_run
from .stall import DEFAULT_FLOOR_SECONDS, HUNG, hung_after, stalled_seconds, typical_step
from .status import InvalidStatus, RunState, RunStatus, parse_status, rank_of_status_file, valid_run_name

log = logging.getLogger(__name__)

UNKNOWN_EXIT = "unknown (the process ended without recording why)"


@dataclass(frozen=True)
class RunMemory:
    """A live run's memory cgroup as the sidecar reads it from the kernel (the group named by the run's
    /proc/<pid>/cgroup, never by a file the run wrote); listed when the group has a limit or a high mark."""

    cgroup: str  # the group's directory
    version: int  # 1 or 2
    current: int  # bytes charged, page cache included
    working_set: int  # current minus the inactive file cache
    max: int | None  # hard limit
    high: int | None  # high mark (v1: the soft limit Crash Guard's containment sets to it)
    high_events: int | None  # the kernel's throttle events at the high mark (v2)
    max_events: int | None  # times the hard limit was hit (v2 memory.events max; v1 failcnt)
    oom_kills: int | None  # OOM kills in the group
    over_high: int | None = None  # the trainer's own count of steps ended over its high mark (its status)
    pressure_some: float | None = None  # % of the last pressureSeconds stalled on memory (v2 PSI of the group)
    pressure_full: float | None = None


@dataclass(frozen=True)
class RunInfo:
    """A run as the client sees it (see docs/protocol.md, RunInfo)."""

    name: str
    dir: str
    pid: int | None
    rank: int
    world_size: int
    state: str
    alive: bool
    step: int | None
    epoch: int | None
    micro_batch: int | None
    accumulation: int | None
    loss: float | None
    peak_rss: int | None
    tree_rss: int | None
    vram: int | None
    last_event: str | None
    exit_cause: str | None
    config: str | None
    checkpoint: str | None
    started: float | None
    updated: float | None
    step_seconds: float | None = None  # the run's typical step time, as its hook publishes it
    stalled_seconds: float | None = None  # seconds since its status was updated (live runs only)
    resume_command: dict[str, Any] | None = None  # {"argv", "cwd"} (contract: argv[0] is the interpreter)
    oom_score_adj: int | None = None  # the process's own (read from /proc while alive), else the one it recorded
    memory: RunMemory | None = None  # its memory cgroup, filled in by the sidecar's sampler
    checkpoint_step: int | None = None  # the newest checkpoint's step (`checkpoint` is its path)
    checkpoint_time: float | None = None  # wall time of that step's boundary: a crash redoes updated - this
    snapshot_bytes: int | None = None  # RAM a checkpoint being written in the background holds


@dataclass(frozen=True)
class RunRecord:
    """A status file, parsed, with the verdict on its process."""

    run_dir: Path
    status_file: Path
    status: RunStatus
    verdict: Verdict

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def rank(self) -> int:
        return self.status.rank

    @property
    def state(self) -> str:
        """The recorded state, or `crashed` when the process is gone without reaching a terminal state."""
        recorded = RunState(self.status.state)
        if recorded.terminal or self.verdict.alive:
            return recorded.value
        return RunState.CRASHED.value

    @property
    def exit_cause(self) -> str | None:
        if self.state != RunState.CRASHED.value:
            return self.status.exit_cause
        if self.verdict.foreign:  # a live process that did not prove it is this run
            return f"not a Crash Guard run: {self.verdict.reason}"
        if self.status.exit_cause:
            return self.status.exit_cause  # recorded by the supervisor of the train command
        return UNKNOWN_EXIT

    def info(self, vram_by_pid: dict[int, int] | None = None, hung_floor: float = DEFAULT_FLOOR_SECONDS,
             now: float | None = None) -> RunInfo:
        """The run as the client sees it; a live run whose status has not changed for longer than
        `stall.hung_after(its step time, hung_floor)` is in state `hung`."""
        s = self.status
        alive = self.verdict.alive
        tree = tree_rss(s.pid) if alive else None
        vram = vram_by_pid.get(s.pid) if alive and vram_by_pid else None
        state = self.state
        stalled = None
        if alive and not RunState(state).terminal:
            stalled = stalled_seconds(s.updated, time.time() if now is None else now)
            if stalled is not None and stalled > hung_after(s.step_seconds, hung_floor):
                state = HUNG
            stalled = None if stalled is None else round(stalled, 1)
        step_seconds = typical_step(s.step_seconds)
        return RunInfo(
            name=self.name, dir=str(self.run_dir), pid=s.pid, rank=s.rank, world_size=s.world_size,
            state=state, alive=alive, step=s.step, epoch=s.epoch, micro_batch=s.micro_batch,
            accumulation=s.accumulation, loss=s.loss, peak_rss=s.peak_rss, tree_rss=tree.rss if tree else None,
            vram=vram,
            last_event=s.last_event, exit_cause=self.exit_cause, config=s.config, checkpoint=s.checkpoint,
            started=s.started or None, updated=s.updated or None,
            step_seconds=None if step_seconds is None else round(step_seconds, 4), stalled_seconds=stalled,
            resume_command=s.resume_command,
            oom_score_adj=_live_or_recorded(read_oom_score_adj(s.pid) if alive else None, s.oom_score_adj),
            checkpoint_step=s.checkpoint_step, checkpoint_time=s.checkpoint_time,
            snapshot_bytes=s.snapshot_bytes if alive else None,
        )


def _live_or_recorded(live: int | None, recorded: int | None) -> int | None:
    return live if live is not None else recorded


@dataclass(frozen=True)
class Refusal:
    """A file or folder of the runs directory that failed a check (reported once, never acted on)."""

    path: Path
    run: str | None
    reason: str

    @property
    def message(self) -> str:
        return f"{self.path}: not acted on: {self.reason}"


class RunScanner(Protocol):
    """What reads like one Registry to code that cleans up runs: a Registry, or the sidecar's Registries."""

    def scan(self) -> list[RunRecord]: ...


_Parsed = RunStatus | str | None  # a valid status, why the file was refused, or None: it vanished meanwhile
_CacheKey = tuple[int, int, int, int, int]


class Registry:
    """The runs under one directory. Thread-safe; `scan()` is cheap enough for every sample."""

    def __init__(self, runs_dir: str | Path) -> None:
        self.runs_dir = Path(runs_dir).expanduser().resolve()
        self._cache: dict[tuple[str, str], tuple[_CacheKey, _Parsed]] = {}
        self._reported: dict[Path, str] = {}  # refusals already reported, with their reason
        self._new_refusals: list[Refusal] = []
        self._lock = threading.Lock()

    def scan(self) -> list[RunRecord]:
        """Every valid status file with a fresh liveness verdict (terminal runs are not checked)."""
        records: list[RunRecord] = []
        refusals: dict[Path, Refusal] = {}
        seen: set[tuple[str, str]] = set()
        with self._lock:
            try:
                runs_fd = os.open(self.runs_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError:
                runs_fd = -1  # no runs directory yet
            if runs_fd >= 0:
                try:
                    for name in sorted(os.listdir(runs_fd)):
                        self._scan_entry(runs_fd, name, records, refusals, seen)
                finally:
                    os.close(runs_fd)
            for stale in set(self._cache) - seen:
                del self._cache[stale]
            self._report(refusals)
        return records

    def _scan_entry(self, runs_fd: int, name: str, records: list[RunRecord], refusals: dict[Path, Refusal],
                    seen: set[tuple[str, str]]) -> None:
        run_dir = self.runs_dir / name
        try:
            st = os.stat(name, dir_fd=runs_fd, follow_symlinks=False)
        except OSError:
            return  # gone meanwhile
        if stat.S_ISLNK(st.st_mode):
            refusals[run_dir] = Refusal(run_dir, None, "the run folder is a symlink (not followed)")
            return
        if not stat.S_ISDIR(st.st_mode) or name.startswith("."):
            return  # files and hidden folders are not runs
        try:
            run_fd = open_checked_dir(name, dir_fd=runs_fd, what=f"run folder {name}")
        except RefusedFile as exc:
            if _has_status_files(runs_fd, name):  # an unrelated folder (tensorboard logs, ...) is not news
                refusals[run_dir] = Refusal(run_dir, None, str(exc))
            return
        except OSError:
            return
        try:
            names = [n for n in sorted(os.listdir(run_fd)) if rank_of_status_file(n) is not None]
            if names and not valid_run_name(name):
                refusals[run_dir] = Refusal(run_dir, None, f"{name[:60]!r} is not a valid run name "
                                            "(letters, digits, '.', '_' or '-', starting with a letter or digit)")
                return
            for filename in names:
                seen.add((name, filename))
                status = self._parse(run_fd, name, filename)
                path = run_dir / filename
                if status is None:
                    continue
                if isinstance(status, str):
                    refusals[path] = Refusal(path, name, status)
                    continue
                if RunState(status.state).terminal:
                    verdict = Verdict(False, False, f"run ended ({status.state})")
                else:
                    verdict = verify_run(run_fd, status)
                if verdict.foreign:
                    refusals[path] = Refusal(path, name, verdict.reason or "not verified")
                records.append(RunRecord(run_dir, path, status, verdict))
        finally:
            os.close(run_fd)

    def _parse(self, run_fd: int, name: str, filename: str) -> _Parsed:
        try:
            st = os.stat(filename, dir_fd=run_fd, follow_symlinks=False)
        except OSError:
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_mode)
        cached = self._cache.get((name, filename))
        if cached is not None and cached[0] == key:
            return cached[1]
        parsed = _parse_status_file(run_fd, name, filename)
        self._cache[(name, filename)] = (key, parsed)
        return parsed

    def _report(self, refusals: dict[Path, Refusal]) -> None:
        reported = {path: r.reason for path, r in refusals.items()}
        for path, refusal in refusals.items():
            if self._reported.get(path) != refusal.reason:
                log.warning("%s", refusal.message)
                self._new_refusals.append(refusal)
        self._reported = reported  # a refusal that clears and comes back is reported again

    def take_refusals(self) -> list[Refusal]:
        """Refusals first seen since the last call (each reported once, until it clears)."""
        with self._lock:
            new, self._new_refusals = self._new_refusals, []
        return new

    def find(self, name: str) -> list[RunRecord]:
        return [r for r in self.scan() if r.name == name]

    def infos(self, vram_by_pid: dict[int, int] | None = None,
              hung_floor: float = DEFAULT_FLOOR_SECONDS) -> list[RunInfo]:
        return [r.info(vram_by_pid, hung_floor) for r in self.scan()]


def _parse_status_file(run_fd: int, name: str, filename: str) -> _Parsed:
    try:
        data = read_checked_json(filename, run_fd)
        status = parse_status(data)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{filename} cannot be read: {exc.strerror}"
    except (RefusedFile, InvalidStatus) as exc:
        return str(exc)
    if status.name != name:
        return f"status names run {status.name!r} but lies in folder {name!r} (a copied or moved run folder)"
    if status.rank != rank_of_status_file(filename):
        return f"{filename} records rank {status.rank}"
    return status


def _has_status_files(runs_fd: int, name: str) -> bool:
    """Whether a folder that failed the checks looks like a run (its names only; nothing in it is read)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=runs_fd)
    except OSError:
        return False
    try:
        return any(rank_of_status_file(n) is not None for n in os.listdir(fd))
    except OSError:
        return True  # unreadable: say so rather than hide it
    finally:
        os.close(fd)
