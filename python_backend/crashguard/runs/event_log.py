"""The run's one event log: `runs/<name>/events.jsonl`, one JSON object a line, appended by rank 0.

Every front door writes its events here through the run's hook (runs/hook.py): back-offs, cleanups, checkpoints,
stops, resumes, the ending. It is the run's *history*: append-only and never rewound, so the last events of an
attempt that crashed stay beside the resumed attempt's (the training recipe's metrics.jsonl, by contrast, is rewound
to the checkpoint so that each step and validation appears once). A record is
`{"time", "step", "event", "message", ...fields}`.

The file lies in a runs folder, which may come from a cloned repository: it is opened without following a symlink,
must be a regular file of this user with a single link, and is read line by line with a bound on each line.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..util.json_io import json_text, strict_loads
from .files import RefusedFile, check_private

log = logging.getLogger(__name__)
EVENTS_FILE = "events.jsonl"
MAX_EVENT_LINE = 64 * 1024  # a line longer than this is skipped when read (no event of ours comes near it)
_APPEND_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _check_log_file(fd: int, path: Path) -> None:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise RefusedFile(f"{path} is not a regular file")
    if st.st_nlink != 1:
        raise RefusedFile(f"{path} has {st.st_nlink} links (a hard link to another file?)")
    check_private(st, str(path))


def open_private_append(path: Path) -> int:
    """An append-only descriptor of `path` (created 0600 if missing): never through a symlink, only a regular,
    singly-linked file of this user that nobody else may write. RefusedFile says which check failed."""
    try:
        fd = os.open(path, _APPEND_FLAGS, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RefusedFile(f"{path} is a symlink (not followed)") from None
        if exc.errno == errno.ENXIO:  # a FIFO nobody reads
            raise RefusedFile(f"{path} is not a regular file") from None
        raise
    try:
        _check_log_file(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


class EventLog:
    """Appends records to one run's events.jsonl; safe to call from the urgent watcher thread too."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._broken = False  # refused once: said once, then the run goes on without its history

    def open(self) -> None:
        """Open (and check) the file now: at registration, so a planted link refuses the run before it starts."""
        with self._lock:
            if self._fd is None:
                self._fd = open_private_append(self.path)

    def append(self, event: str, message: str, step: int, **fields: Any) -> None:
        record = {"time": round(time.time(), 3), "step": step, "event": event, "message": message, **fields}
        line = (json_text(record) + "\n").encode()
        with self._lock:
            if self._broken:
                return
            try:
                if self._fd is None:
                    self._fd = open_private_append(self.path)
                os.write(self._fd, line)  # O_APPEND: one write, one whole line, whoever else appends
            except (OSError, RefusedFile) as exc:
                self._broken = True
                log.warning("no more events in %s: %s", self.path, exc)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def read_events(path: Path) -> Iterator[dict[str, Any]]:
    """The records of an events.jsonl, in order: lines that are not a JSON object, or too long, are skipped (a line
    torn by a kill, a hostile file); a symlink, a file that is not regular, or a missing file gives nothing."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError:
        return
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return
        while line := handle.readline(MAX_EVENT_LINE + 1):
            if len(line) > MAX_EVENT_LINE:
                while line and not line.endswith(b"\n"):  # the rest of an over-long line
                    line = handle.readline(MAX_EVENT_LINE + 1)
                continue
            try:
                record = strict_loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(record, dict) and isinstance(record.get("event"), str):
                yield record
