"""Discover the training runs registered under the runs directory and tell which are alive, finished or crashed.

A run writes `runs/<name>/status.json` (other ranks `status.rankN.json`). Every file is read through the checks
of runs/files.py (no symlink, ours and private, size cap, strict JSON with bounded numbers) and runs/status.py
(types, each number's range), and every live claim is proved (runs/liveness.py: create time, user, thread-group
leader, the run's singly-linked lock). What fails a check is not a run: it is never alive and never controlled,
and it is reported once (a log warning, which the sidecar forwards to the client, and `take_refusals()` for its
history) with the reason. A fault of any kind in one run folder (a parse error, an overflow, an I/O error, a bug)
refuses that folder only; every other run is scanned, sampled and controlled as before.

What a scan costs does not grow with the number of ended or refused runs. The runs folder is listed again only
when it changed (its mtime: a run folder created, removed or renamed, or a run registering, which touches it); a
run folder is looked at again when its own stat changed (every writer of Crash Guard replaces files by rename,
which changes it; a file edited in place is seen when its folder next changes). Only live runs, and runs alive in
the last HOT_SECONDS (a supervisor recording a crash just after the death), are looked at on every scan, plus
ROUND_ROBIN other folders' stat in turn (a folder rewritten by an older hook, which does not touch the runs folder).
A status is re-parsed only when it changed (inode, mtime, ctime, size), and a process found dead stays dead until
its status changes (a pid and create time never come back). Folders not looked at yet are read newest first, at
most LOOK_SECONDS of that per scan.

A crash is news only with a proof (contract C1): `witnessed` (this monitor proved the run alive and then saw it
die, runs/witness.py) or `supervisor` (its supervisor or watchdog sealed the record, runs/crash_seal.py); a file
alone proves nothing. A crash in the future, or older than MAX_CRASH_AGE_SECONDS, carries no proof.
"""

from __future__ import annotations

import heapq
import logging
import math
import os
import stat
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..guard.oom_score import read_oom_score_adj
from ..monitor.processes import tree_rss
from .crash_seal import is_sealed, seal_key
from .files import RefusedFile, open_checked_dir, read_checked_json
from .liveness import LockHolder, Verdict, lock_holders, verify_run
from .stall import DEFAULT_FLOOR_SECONDS, HUNG, hung_after, stalled_seconds, typical_step
from .status import InvalidStatus, RunState, RunStatus, parse_status, rank_of_status_file, valid_run_name
from .witness import MAX_CRASH_AGE_SECONDS, Witness

log = logging.getLogger(__name__)

UNKNOWN_EXIT = "unknown (the process ended without recording why)"
WITNESSED, SUPERVISOR = "witnessed", "supervisor"  # RunInfo.crash_proof
HOT_SECONDS = 60.0
ROUND_ROBIN = 1  # folders whose stat is compared per look, in turn (a folder written by an older hook)
LOOK_SECONDS = 0.05  # a sample's look at folders it has not seen yet stops after this long (MIN_LOOKS at least)
MIN_LOOKS = 16
MAX_REPORTS = 32  # refusals reported one by one per REPORT_WINDOW_SECONDS; the rest counted in a summary line
REPORT_WINDOW_SECONDS = 60.0
SUMMARY_SECONDS = 10.0  # a summary of refusals not reported one by one, at most this often
FUTURE_SLACK_SECONDS = 60.0  # a time later than now + this was not written by a run on this clock
REORDER_SECONDS = 600.0  # ended runs are put in order again at least this often (crash proofs age)


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
    crash_proof: str | None = None  # a crash's proof (WITNESSED, SUPERVISOR) or None: a file alone (contract C1)
    lock_holder: LockHolder | None = None  # a process still holding a crashed run's lock (crashGuard/runs only)


@dataclass(frozen=True)
class RunRecord:
    """A status file, parsed, with the verdict on its process."""

    run_dir: Path
    status_file: Path
    status: RunStatus
    verdict: Verdict
    proof: str | None = None  # the crash's proof, before the time checks of `crash_proof`
    witnessed_at: float | None = None  # for a witnessed crash: when the monitor last saw it alive

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

    def crash_proof(self, now: float | None = None) -> str | None:
        """The proof of this crash, if it is one and is news: never for a time in the future (a clock this run
        did not write on), never older than MAX_CRASH_AGE_SECONDS."""
        if self.proof is None or self.state != RunState.CRASHED.value:
            return None
        now = time.time() if now is None else now
        s = self.status
        if max(s.updated, s.started, s.create_time) > now + FUTURE_SLACK_SECONDS:
            return None
        when = max(s.updated, self.witnessed_at or 0.0)
        return self.proof if now - when <= MAX_CRASH_AGE_SECONDS else None

    def sort_time(self, now: float) -> float:
        """`updated` for ordering ended runs (newest first); a time in the future counts as the oldest."""
        updated = self.status.updated
        return updated if updated <= now + FUTURE_SLACK_SECONDS else 0.0

    def info(self, vram_by_pid: dict[int, int] | None = None, hung_floor: float = DEFAULT_FLOOR_SECONDS,
             now: float | None = None, lock_holder: LockHolder | None = None) -> RunInfo:
        """The run as the client sees it; a live run whose status has not changed for longer than
        `stall.hung_after(its step time, hung_floor)` is in state `hung`."""
        s = self.status
        now = time.time() if now is None else now
        alive = self.verdict.alive
        tree = tree_rss(s.pid) if alive else None
        vram = vram_by_pid.get(s.pid) if alive and vram_by_pid else None
        state = self.state
        stalled = None
        if alive and not RunState(state).terminal:
            stalled = stalled_seconds(s.updated, now)
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
            crash_proof=self.crash_proof(now), lock_holder=lock_holder,
        )

    def lock_holder(self) -> LockHolder | None:
        """For a crashed run: a live process still holding its lock (a stray child kept it, so a resume would fail
        with RunLocked). A pass over /proc: for a request, never for every sample."""
        s = self.status
        if self.verdict.alive or s.lock_dev is None or s.lock_ino is None:
            return None
        found = lock_holders(s.lock_dev, s.lock_ino, limit=1)
        return found[0] if found else None


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


@dataclass(frozen=True)
class Snapshot:
    """What one look at the runs folder(s) found, for a sample: every live run, the most relevant ended ones,
    how many ended runs there are in all, and (when drained) what changed since the last drained snapshot."""

    live: list[RunRecord]
    recent: list[RunRecord]  # ended runs: proven crashes first, then the newest; at most the limit asked for
    ended: int  # ended (or refused-as-foreign) runs in all
    changed: list[RunRecord] = field(default_factory=list)  # records of run folders that changed
    removed: list[Path] = field(default_factory=list)  # run folders gone


_Parsed = RunStatus | str | None  # a valid status, why the file was refused, or None: it vanished meanwhile
_FileKey = tuple[int, int, int, int, int]
_FolderKey = tuple[int, int, int, int, int]


def _folder_key(st: os.stat_result) -> _FolderKey:
    return st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_mode, st.st_uid


@dataclass
class _Entry:
    """One name in the runs folder as last examined."""

    name: str
    folder: _FolderKey | None = None
    files: dict[str, tuple[_FileKey, _Parsed]] = field(default_factory=dict)
    records: tuple[RunRecord, ...] = ()
    refusals: dict[Path, Refusal] = field(default_factory=dict)
    alive_at: float = -math.inf  # monotonic: when a record of it was last proved alive

    @property
    def alive(self) -> bool:
        return any(r.verdict.alive for r in self.records)

    def signature(self) -> tuple[Any, ...]:
        return (tuple((r.status_file.name, id(r.status), r.verdict.alive, r.verdict.reason, r.proof)
                      for r in self.records), tuple(sorted((str(p), r.reason) for p, r in self.refusals.items())))

    def ended(self) -> list[RunRecord]:
        return [r for r in self.records if not r.verdict.alive]


class Registry:
    """The runs under one directory. Thread-safe; `scan()` and `snapshot()` are cheap enough for every sample.
    `witness`: the monitor's record of runs it saw alive (only the sidecar keeps one; crash proofs need it)."""

    def __init__(self, runs_dir: str | Path, witness: Witness | None = None) -> None:
        self.runs_dir = Path(runs_dir).expanduser().resolve()
        self._witness = witness
        self._entries: dict[str, _Entry] = {}
        self._order: list[str] = []  # the names, sorted (scan order and the round robin's)
        self._cursor = 0
        self._dir_key: tuple[int, ...] | None = None
        self._hot: set[str] = set()  # names looked at on every scan: alive, or alive within HOT_SECONDS
        self._pending: list[str] = []  # names waiting for a first (or another) look; the last is looked at first
        self._pending_set: set[str] = set()
        self._changed: dict[str, None] = {}  # names changed since the last drained snapshot
        self._removed: list[Path] = []
        self._ended: list[RunRecord] | None = None  # ordered for listing; rebuilt after ended runs changed
        self._ended_at = 0.0
        self._reported_new: list[Refusal] = []
        self._new_refusals: list[Refusal] = []
        self._window = (-math.inf, 0)  # (when the report window began, refusals reported one by one in it)
        self._suppressed = 0  # refusals not reported one by one since the last summary
        self._summary_at = -math.inf
        self._lock = threading.Lock()

    # -- looking -----------------------------------------------------------------------------------------------
    @property
    def settled(self) -> bool:
        """Whether every run folder has been looked at since the runs folder was first listed."""
        return self._dir_key is not None and not self._pending

    def _refresh(self, budget: float | None = LOOK_SECONDS) -> None:
        """Bring the entries up to date (under the lock). `budget`: seconds this look may spend on folders not
        looked at yet (a runs folder that just received thousands); the rest wait for the next look, newest first.
        None: look at everything now (a request, the CLI)."""
        now = time.monotonic()
        try:
            runs_fd = os.open(self.runs_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            for name in list(self._entries):  # no runs directory (yet, or any more)
                self._remove(name)
            self._dir_key = None
            self._order = []
            self._pending, self._pending_set = [], set()
            return
        try:
            st = os.fstat(runs_fd)
            key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_nlink)
            if key != self._dir_key:
                self._dir_key = key  # read before the listing: a change during it shows next time
                self._full_pass(runs_fd, now)
            else:
                self._quick_pass(runs_fd, now)
            self._work_off(runs_fd, now, budget)
        finally:
            os.close(runs_fd)
        self._report()

    def _work_off(self, runs_fd: int, now: float, budget: float | None) -> None:
        """Look at pending folders (newest first) for at most `budget` seconds (and at least MIN_LOOKS of them)."""
        started, done = time.monotonic(), 0
        while self._pending:
            if budget is not None and done >= MIN_LOOKS and time.monotonic() - started > budget:
                break
            name = self._pending.pop()
            self._pending_set.discard(name)
            self._examine(runs_fd, name, now)
            done += 1

    def _full_pass(self, runs_fd: int, now: float) -> None:
        """The folder changed: list it, drop what is gone, look at each name whose own stat changed."""
        try:
            names = sorted(os.listdir(runs_fd))
        except OSError:
            names = []
        present = set(names)
        for gone in set(self._entries) - present:
            self._remove(gone)
        self._pending = [n for n in self._pending if n in present]
        self._pending_set &= present
        self._order = names
        waiting: list[tuple[int, str]] = []
        for name in names:
            if name in self._hot:
                self._examine(runs_fd, name, now)  # a live run: now, whatever else waits
                continue
            try:
                st = os.stat(name, dir_fd=runs_fd, follow_symlinks=False)
            except OSError:
                continue
            entry = self._entries.get(name)
            if (entry is None or _folder_key(st) != entry.folder) and name not in self._pending_set:
                waiting.append((st.st_mtime_ns, name))
        if waiting:  # the newest last: popped first (a run that registered just now is among them)
            waiting.sort()
            self._pending.extend(n for _, n in waiting)
            self._pending_set.update(n for _, n in waiting)

    def _quick_pass(self, runs_fd: int, now: float) -> None:
        """The folder did not change: look at the hot entries, and at a few others in turn."""
        for name in list(self._hot):
            self._examine(runs_fd, name, now)
        order = self._order
        for _ in range(min(ROUND_ROBIN, len(order))):
            self._cursor = (self._cursor + 1) % len(order)
            name = order[self._cursor]
            if name in self._hot or name in self._pending_set:
                continue
            entry = self._entries.get(name)
            if entry is None or self._folder_changed(runs_fd, entry):
                self._examine(runs_fd, name, now)

    @staticmethod
    def _folder_changed(runs_fd: int, entry: _Entry) -> bool:
        try:
            st = os.stat(entry.name, dir_fd=runs_fd, follow_symlinks=False)
        except OSError:
            return True
        return _folder_key(st) != entry.folder

    def _remove(self, name: str) -> None:
        entry = self._entries.pop(name, None)
        self._hot.discard(name)
        if entry is not None:
            self._removed.append(self.runs_dir / name)
            self._changed.pop(name, None)
            if entry.ended():
                self._ended = None

    def _examine(self, runs_fd: int, name: str, now: float) -> None:
        """Look at one name again; any exception refuses that name alone."""
        old = self._entries.get(name) or _Entry(name)
        entry = _Entry(name, files=dict(old.files))
        try:
            self._look(runs_fd, entry, old)
        except Exception as exc:  # a fault in one run's files stays with that run
            path = self.runs_dir / name
            log.debug("run folder %s refused after an error", path, exc_info=True)
            entry.records = ()
            entry.refusals = {path: Refusal(path, name, f"could not be read: {type(exc).__name__}: "
                                                        f"{str(exc)[:200]}")}
        entry.alive_at = now if entry.alive else old.alive_at
        if now - entry.alive_at < HOT_SECONDS:  # live, or just died: its supervisor may record the crash
            self._hot.add(name)
        else:
            self._hot.discard(name)
        if entry.signature() != old.signature():
            self._changed[name] = None
            if [id(r.status) for r in entry.ended()] != [id(r.status) for r in old.ended()] or \
                    [r.proof for r in entry.ended()] != [r.proof for r in old.ended()]:
                self._ended = None
        for path, refusal in entry.refusals.items():
            previous = old.refusals.get(path)
            if previous is None or previous.reason != refusal.reason:
                self._reported_new.append(refusal)  # reported once, until it clears and comes back
        self._entries[name] = entry

    def _look(self, runs_fd: int, entry: _Entry, old: _Entry) -> None:
        name = entry.name
        run_dir = self.runs_dir / name
        try:
            st = os.stat(name, dir_fd=runs_fd, follow_symlinks=False)
        except OSError:
            entry.files = {}
            return  # gone meanwhile
        if stat.S_ISLNK(st.st_mode):
            entry.files = {}
            entry.refusals[run_dir] = Refusal(run_dir, None, "the run folder is a symlink (not followed)")
            return
        entry.folder = _folder_key(st)
        if not stat.S_ISDIR(st.st_mode) or name.startswith("."):
            entry.files = {}
            return  # files and hidden folders are not runs
        try:
            run_fd = open_checked_dir(name, dir_fd=runs_fd, what=f"run folder {name}")
        except RefusedFile as exc:
            entry.files = {}
            if _has_status_files(runs_fd, name):  # an unrelated folder (tensorboard logs, ...) is not news
                entry.refusals[run_dir] = Refusal(run_dir, None, str(exc))
            return
        except OSError:
            entry.files = {}
            return
        try:
            names = sorted(n for n in os.listdir(run_fd) if rank_of_status_file(n) is not None)
            entry.files = {n: entry.files[n] for n in names if n in entry.files}
            if names and not valid_run_name(name):
                entry.files = {}
                entry.refusals[run_dir] = Refusal(run_dir, None, f"{name[:60]!r} is not a valid run name "
                                                  "(letters, digits, '.', '_' or '-', starting with a letter or digit)")
                return
            previous = {r.status_file.name: r for r in old.records}
            records: list[RunRecord] = []
            for filename in names:
                record = self._record(run_fd, entry, filename, previous.get(filename))
                if record is not None:
                    records.append(record)
            entry.records = tuple(records)
        finally:
            os.close(run_fd)

    def _record(self, run_fd: int, entry: _Entry, filename: str, previous: RunRecord | None) -> RunRecord | None:
        run_dir = self.runs_dir / entry.name
        path = run_dir / filename
        status = self._parse(run_fd, entry, filename)
        if status is None:
            return None
        if isinstance(status, str):
            entry.refusals[path] = Refusal(path, entry.name, status)
            return None
        if RunState(status.state).terminal:
            verdict = Verdict(False, False, f"run ended ({status.state})")
        elif previous is not None and previous.status is status and not previous.verdict.alive:
            verdict = previous.verdict  # dead (or not this run) stays so until the status changes
        else:
            verdict = verify_run(run_fd, status)
        if verdict.foreign:
            entry.refusals[path] = Refusal(path, entry.name, verdict.reason or "not verified")
        if verdict.alive and self._witness is not None:
            self._witness.saw_alive(run_dir, status)
        if previous is not None and previous.status is status and previous.verdict == verdict:
            return previous
        proof, witnessed_at = self._proof(run_dir, status, verdict)
        return RunRecord(run_dir, path, status, verdict, proof, witnessed_at)

    def _proof(self, run_dir: Path, status: RunStatus, verdict: Verdict) -> tuple[str | None, float | None]:
        """Contract C1: what proves that this dead run crashed (see the module's docstring)."""
        if verdict.alive or verdict.foreign:
            return None, None
        state = RunState(status.state)
        if state.terminal and state is not RunState.CRASHED:
            return None, None
        if self._witness is not None:
            seen = self._witness.witnessed(run_dir, status)
            if seen is not None:
                return WITNESSED, seen
        if state is RunState.CRASHED and status.crash_seal and is_sealed(run_dir, status, seal_key(create=False)):
            return SUPERVISOR, None
        return None, None

    def _parse(self, run_fd: int, entry: _Entry, filename: str) -> _Parsed:
        try:
            st = os.stat(filename, dir_fd=run_fd, follow_symlinks=False)
        except OSError:
            entry.files.pop(filename, None)
            return None
        key = _file_key(st)
        cached = entry.files.get(filename)
        if cached is not None and cached[0] == key:
            return cached[1]
        parsed = _parse_status_file(run_fd, entry.name, filename)
        entry.files[filename] = (key, parsed)
        return parsed

    def _report(self) -> None:
        """Log the new refusals: MAX_REPORTS one by one per window, then (a folder of planted runs) a summary line
        at most every SUMMARY_SECONDS, not thousands of lines."""
        new, self._reported_new = self._reported_new, []
        now = time.monotonic()
        began, count = self._window
        if now - began >= REPORT_WINDOW_SECONDS:
            began, count = now, 0
        room = max(0, MAX_REPORTS - count)
        for refusal in new[:room]:
            log.warning("%s", refusal.message)
            self._new_refusals.append(refusal)
        self._window = (began, count + min(room, len(new)))
        self._suppressed += max(0, len(new) - room)
        if self._suppressed and now - self._summary_at >= SUMMARY_SECONDS:
            summary = Refusal(self.runs_dir, None, f"{self._suppressed} more files or folders refused (not listed "
                              "one by one; each is skipped until it changes)")
            log.warning("%s", summary.message)
            self._new_refusals.append(summary)
            self._suppressed, self._summary_at = 0, now

    # -- what callers see --------------------------------------------------------------------------------------
    def _all_records(self) -> list[RunRecord]:
        return [r for name in self._order if (e := self._entries.get(name)) is not None for r in e.records]

    def scan(self) -> list[RunRecord]:
        """Every valid status file with a fresh verdict for live runs, in folder-name order. Lists every run and
        looks at every folder first: for requests and the CLI; a sample takes `snapshot()`."""
        with self._lock:
            self._refresh(budget=None)
            return self._all_records()

    def _ordered_ended(self, now: float) -> list[RunRecord]:
        if self._ended is None or now - self._ended_at > REORDER_SECONDS:  # crash proofs age: reorder now and then
            ended = [r for e in self._entries.values() for r in e.ended()]
            ended.sort(key=lambda r: (r.crash_proof(now) is None, -r.sort_time(now), str(r.status_file)))
            self._ended, self._ended_at = ended, now
        return self._ended

    def snapshot(self, limit: int, drain: bool = False) -> Snapshot:
        """Live runs, the `limit` most relevant ended ones and their count; with `drain`, also what changed since
        the last drained snapshot (the sampling thread's: run events)."""
        with self._lock:
            self._refresh()
            now = time.time()
            live = [r for name in self._hot if (e := self._entries.get(name)) is not None
                    for r in e.records if r.verdict.alive]
            ended = self._ordered_ended(now)
            changed: list[RunRecord] = []
            removed: list[Path] = []
            if drain:
                changed = [r for name in self._changed if (e := self._entries.get(name)) is not None
                           for r in e.records]
                removed, self._removed = self._removed, []
                self._changed = {}
            return Snapshot(live, ended[:limit], len(ended), changed, removed)

    def _look_now(self, name: str) -> None:
        try:
            runs_fd = os.open(self.runs_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            self._examine(runs_fd, name, time.monotonic())
        finally:
            os.close(runs_fd)
        self._report()

    def refuse(self, record: RunRecord, reason: str) -> None:
        """Take a record out (a fault found while describing it): its run folder is refused until it changes."""
        with self._lock:
            entry = self._entries.get(record.name)
            if entry is None or record not in entry.records:
                return
            entry.records = tuple(r for r in entry.records if r is not record)
            refusal = Refusal(record.status_file, record.name, reason)
            entry.refusals[record.status_file] = refusal
            self._changed[record.name] = None
            self._ended = None
            self._reported_new.append(refusal)
            self._report()

    def take_refusals(self) -> list[Refusal]:
        """Refusals first seen since the last call (each reported once, until it clears)."""
        with self._lock:
            new, self._new_refusals = self._new_refusals, []
        return new

    def find(self, name: str) -> list[RunRecord]:
        with self._lock:
            self._refresh()
            if name in self._pending_set:  # not looked at yet: now
                self._pending.remove(name)
                self._pending_set.discard(name)
                self._look_now(name)
            entry = self._entries.get(name)
            return list(entry.records) if entry is not None else []

    def infos(self, vram_by_pid: dict[int, int] | None = None,
              hung_floor: float = DEFAULT_FLOOR_SECONDS) -> list[RunInfo]:
        return [r.info(vram_by_pid, hung_floor) for r in self.scan()]


def merge_recent(snapshots: Iterable[Snapshot], limit: int) -> list[RunRecord]:
    """The `limit` most relevant ended runs of several directories (each snapshot's list is in that order)."""
    lists = [s.recent for s in snapshots if s.recent]
    if len(lists) <= 1:
        return lists[0][:limit] if lists else []
    now = time.time()
    return list(heapq.merge(*lists,
                            key=lambda r: (r.crash_proof(now) is None, -r.sort_time(now))))[:limit]


def _file_key(st: os.stat_result) -> _FileKey:
    return st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_mode


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
