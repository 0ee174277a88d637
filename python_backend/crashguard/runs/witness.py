"""What the monitor saw alive: the witness behind a "witnessed" crash (contract C1).

A crash is news the editor acts on (a prompt, Resume runs the recorded command), so a file saying "crashed" is not
enough. The monitor records each run it proved alive (runs/liveness.py `verify_run`: the run's lock held by that
very process) — its folder, rank, pid, create time and a digest of its resume command — and a run it saw alive and
later finds dead is a crash it witnessed, with the command it saw. The record lives in the user's private state
folder (`state_dir()/witness.json`, 0600), so a restarted monitor still recognises a crash it saw coming; it is
bounded (MAX_ENTRIES, the most recently seen kept) and pruned by age (MAX_CRASH_AGE_SECONDS).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from ..util.json_io import json_text, write_json_atomic
from ..util.user_dirs import UnsafeDirectory, state_dir
from .files import RefusedFile, read_checked_json
from .liveness import CREATE_TIME_TOLERANCE
from .status import PID_MAX, RunStatus

log = logging.getLogger(__name__)
WITNESS_FILE = "witness.json"
MAX_CRASH_AGE_SECONDS = 3 * 24 * 3600  # a crash older than this is history, not news (the extension's cap too)
MAX_ENTRIES = 1024
REFRESH_SECONDS = 600.0  # a live run's "last seen" is written again at most this often (it only serves pruning)
_MAX_FILE_BYTES = 512 * 1024

_Key = tuple[str, int, int]  # run folder, rank, pid


def resume_digest(command: dict[str, Any] | None) -> str | None:
    """A digest of a (validated) resume command: the witness keeps what it saw, not the command itself."""
    return None if command is None else hashlib.sha256(json_text(command, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Seen:
    dir: str
    rank: int
    pid: int
    create_time: float
    resume: str | None  # resume_digest of the command the live run recorded
    seen: float  # wall time it was last seen alive (to within REFRESH_SECONDS)

    @property
    def key(self) -> _Key:
        return self.dir, self.rank, self.pid

    def to_dict(self) -> dict[str, Any]:
        return {"dir": self.dir, "rank": self.rank, "pid": self.pid, "create_time": self.create_time,
                "resume": self.resume, "seen": self.seen}


def _parse(item: Any) -> Seen | None:
    if not isinstance(item, dict):
        return None
    d, rank, pid, ct, resume, seen = (item.get(k) for k in ("dir", "rank", "pid", "create_time", "resume", "seen"))
    if not (isinstance(d, str) and os.path.isabs(d) and len(d) <= 4096):
        return None
    if not (_is_int(rank) and _is_int(pid) and 1 <= pid <= PID_MAX and rank >= 0):
        return None
    if not (_is_number(ct) and _is_number(seen)):
        return None
    if resume is not None and not (isinstance(resume, str) and len(resume) == 64):
        return None
    return Seen(d, rank, pid, float(ct), resume, float(seen))


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Witness:
    """Thread-safe. `path` None: the user's state folder (in memory only if it is not private: a warning once)."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._seen: dict[_Key, Seen] = {}
        self._lock = threading.Lock()
        self._loaded = False

    def _file(self) -> Path | None:
        if self._path is None:
            try:
                self._path = state_dir() / WITNESS_FILE
            except (UnsafeDirectory, OSError) as exc:
                log.warning("crash witness kept in memory only (a monitor restart forgets it): %s", exc)
                return None
        return self._path

    def _read(self, now: float) -> dict[_Key, Seen]:
        path = self._file()
        if path is None:
            return {}
        try:
            dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return {}
        try:
            data = read_checked_json(path.name, dir_fd, str(path), cap=_MAX_FILE_BYTES)
        except (OSError, RefusedFile):
            return {}
        finally:
            os.close(dir_fd)
        items = data.get("runs") if isinstance(data, dict) else None
        found: dict[_Key, Seen] = {}
        for item in items if isinstance(items, list) else []:
            seen = _parse(item)
            if seen is not None and now - seen.seen <= MAX_CRASH_AGE_SECONDS:
                found[seen.key] = seen
        return found

    def _load(self, now: float) -> None:
        if not self._loaded:
            self._loaded = True
            self._seen = {**self._read(now), **self._seen}

    def _save(self, now: float) -> None:
        """Merge with the file (another window's monitor may have written it), prune, write atomically."""
        path = self._file()
        if path is None:
            return
        merged = self._read(now)
        for key, seen in self._seen.items():
            if key not in merged or merged[key].seen <= seen.seen:
                merged[key] = seen
        kept = sorted((s for s in merged.values() if now - s.seen <= MAX_CRASH_AGE_SECONDS),
                      key=lambda s: s.seen, reverse=True)[:MAX_ENTRIES]
        self._seen = {s.key: s for s in kept}
        try:
            write_json_atomic(path, {"version": 1, "runs": [s.to_dict() for s in kept]})
        except OSError as exc:
            log.warning("could not write the crash witness %s: %s", path, exc)

    def saw_alive(self, run_dir: Path, status: RunStatus, now: float | None = None) -> None:
        """A run proved alive just now (call only after `verify_run` said so)."""
        now = time.time() if now is None else now
        seen = Seen(str(run_dir), status.rank, status.pid, status.create_time,
                    resume_digest(status.resume_command), now)
        with self._lock:
            self._load(now)
            old = self._seen.get(seen.key)
            if old is not None and old.create_time == seen.create_time and old.resume == seen.resume \
                    and now - old.seen < REFRESH_SECONDS:
                return  # nothing new to keep: no write
            self._seen[seen.key] = seen
            self._save(now)

    def witnessed(self, run_dir: Path, status: RunStatus, now: float | None = None) -> float | None:
        """When this very process (folder, rank, pid, create time), with this resume command, was last seen alive;
        None if it never was (or too long ago)."""
        now = time.time() if now is None else now
        with self._lock:
            self._load(now)
            seen = self._seen.get((str(run_dir), status.rank, status.pid))
        if seen is None or abs(seen.create_time - status.create_time) > CREATE_TIME_TOLERANCE:
            return None
        if seen.resume != resume_digest(status.resume_command):
            return None  # the command on file is not the one the live run recorded
        return seen.seen if now - seen.seen <= MAX_CRASH_AGE_SECONDS else None
