"""The supervisor's seal on a crash record: proof that a run's own supervisor (or watchdog) wrote `crashed`.

A status file that says "crashed" is a claim anyone who can write a file can make, with any resume command. The
supervisor of `crashguard train` and the watchdog of a plain run are processes of the user; when they mark their
run crashed they add `crash_seal`, an HMAC-SHA256 of the crash record (the run folder's absolute path, rank, pid,
create time, state, exit cause, time and resume command) with a key kept in the user's private state folder
(`crashguard.util.user_dirs.state_dir()`, 0600). The monitor, running as the same user, checks it: a planted file
cannot carry a valid seal, and a genuine record copied to another folder no longer matches its path.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from ..util.json_io import json_text
from ..util.user_dirs import UnsafeDirectory, state_dir
from .status import RunState, RunStatus, valid_resume_command

KEY_FILE = "crash-seal.key"
KEY_BYTES = 32
PREFIX = "v1:"


def _read_key(path: Path) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            return None  # not ours alone: no seal is trusted (nor written) with it
        data = os.read(fd, KEY_BYTES + 1)
    finally:
        os.close(fd)
    return data if len(data) == KEY_BYTES else None


def seal_key(create: bool) -> bytes | None:
    """The user's sealing key; created (0600) when `create` and missing. None where there is no private state
    folder or the key file is not this user's alone."""
    try:
        path = state_dir() / KEY_FILE
    except (UnsafeDirectory, OSError):
        return None
    key = _read_key(path)
    if key is not None or not create:
        return key
    with contextlib.suppress(FileExistsError):  # another process may create it at the same moment: theirs wins
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, secrets.token_bytes(KEY_BYTES))
        finally:
            os.close(fd)
    return _read_key(path)


def _record(run_dir: Path, status: dict[str, Any]) -> bytes:
    """The sealed fields, as canonical JSON (floats by repr, which a JSON round trip keeps exactly)."""
    return json_text([
        str(run_dir), status.get("rank", 0), status.get("pid"), float(status.get("create_time") or 0.0),
        status.get("state"), status.get("exit_cause"), float(status.get("updated") or 0.0),
        valid_resume_command(status.get("resume_command")),
    ], sort_keys=True).encode()


def seal(run_dir: Path, status: dict[str, Any], key: bytes) -> str:
    """The seal of the crash record `status` (a status file's content, state already "crashed") of `run_dir`."""
    return PREFIX + hmac.new(key, _record(run_dir.absolute(), status), hashlib.sha256).hexdigest()


def is_sealed(run_dir: Path, status: RunStatus, key: bytes | None) -> bool:
    """Whether `status` (parsed) is a crash record sealed with `key` for exactly this run folder."""
    if key is None or status.state != RunState.CRASHED.value or not status.crash_seal:
        return False
    expected = seal(run_dir, status.to_dict(), key)
    return hmac.compare_digest(expected.encode(), status.crash_seal.encode("utf-8", "replace"))
