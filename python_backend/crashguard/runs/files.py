"""Files of the runs folder: writes that stay inside it, and reads that refuse what they cannot trust.

What is written goes through util/json_io.py (strict JSON, atomic). Everything read from a runs folder goes
through `read_checked_json`: no symlink is followed, the file and its folder belong to this user and are not writable by
group or others, the size is capped before anything is read, and NaN/Infinity are refused at parse.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from ..util.json_io import json_text, strict_loads

# Status files are ~1 KB and answers (a cleanup report) a few KB: 64 KiB leaves room and keeps a hostile file cheap.
MAX_RUN_FILE_BYTES = 64 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a planted FIFO cannot hang us


class RefusedFile(Exception):
    """A file or folder of a runs folder that failed a check; the message says which check."""


def write_json_at(dir_fd: int, name: str, data: Any) -> None:
    """Atomically write `name` inside the folder open as `dir_fd`: the temp file is created there with O_EXCL and
    O_NOFOLLOW and renamed within that folder, so nothing lands outside it whatever symlinks lie around."""
    if "/" in name or name in ("", ".", ".."):
        raise ValueError(f"not a plain file name: {name!r}")
    payload = json_text(data).encode()
    tmp = f".{name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        unlink_at(dir_fd, tmp)
        raise


def unlink_at(dir_fd: int, name: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)


# -- checked reads -----------------------------------------------------------------------------------------------
def check_private(st: os.stat_result, what: str) -> None:
    """`what` must belong to this user and be writable by nobody else (else another user could plant a claim)."""
    if st.st_uid != os.geteuid():
        raise RefusedFile(f"{what} is owned by uid {st.st_uid}, not by this user (uid {os.geteuid()})")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise RefusedFile(f"{what} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})")


def open_checked_dir(name: str | Path, dir_fd: int | None = None, what: str | None = None) -> int:
    """Open a folder without following a symlink and check it is ours and private; the fd is the caller's to close.
    `dir_fd` makes `name` relative to an open folder (then `name` must be a single component)."""
    label = what or str(name)
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ENOTDIR and _is_symlink(name, dir_fd):  # O_DIRECTORY answers ENOTDIR for a link
            raise RefusedFile(f"{label} is a symlink (not followed)") from None
        raise _refusal(label, exc, "a folder") from None
    try:
        check_private(os.fstat(fd), label)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _is_symlink(name: str | Path, dir_fd: int | None) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _refusal(label: str, exc: OSError, kind: str) -> OSError | RefusedFile:
    if exc.errno == errno.ELOOP:
        return RefusedFile(f"{label} is a symlink (not followed)")
    if exc.errno == errno.ENOTDIR:
        return RefusedFile(f"{label} is not {kind}")
    return exc  # FileNotFoundError and the like: the caller decides


@contextmanager
def open_run_dir(runs_dir: Path, name: str) -> Iterator[int]:
    """The run folder `runs_dir/name`, opened checked (not a symlink, ours, private). The runs folder itself is
    the configured one and may be reached through a symlink; nothing below it is."""
    if "/" in name or name in ("", ".", ".."):
        raise RefusedFile(f"{name!r} is not a run folder name")
    runs_fd = os.open(runs_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        run_fd = open_checked_dir(name, dir_fd=runs_fd, what=f"run folder {name}")
    finally:
        os.close(runs_fd)
    try:
        yield run_fd
    finally:
        os.close(run_fd)


def ensure_checked_dir(name: str, dir_fd: int, what: str | None = None) -> int:
    """Create the folder `name` (0755) inside the open folder `dir_fd` if missing, then `open_checked_dir` it: an
    existing symlink there is refused, never followed."""
    with suppress(FileExistsError):
        os.mkdir(name, 0o755, dir_fd=dir_fd)
    return open_checked_dir(name, dir_fd=dir_fd, what=what)


def read_checked_bytes(name: str, dir_fd: int, what: str | None = None, cap: int = MAX_RUN_FILE_BYTES) -> bytes:
    """The bytes of a regular file `name` in the open folder `dir_fd`: no symlink, ours and private, at most `cap`
    bytes (checked with fstat before reading, and again while reading a file that grows)."""
    label = what or name
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise _refusal(label, exc, "a file") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RefusedFile(f"{label} is not a regular file")
        check_private(st, label)
        if st.st_size > cap:
            raise RefusedFile(f"{label} is {st.st_size} bytes, over the {cap}-byte limit")
        data = os.read(fd, cap + 1)
        if len(data) > cap:
            raise RefusedFile(f"{label} grew over the {cap}-byte limit while being read")
        return data
    finally:
        os.close(fd)


def read_checked_json(name: str, dir_fd: int, what: str | None = None, cap: int = MAX_RUN_FILE_BYTES) -> Any:
    """`read_checked_bytes`, parsed as strict JSON; RefusedFile names what is wrong."""
    label = what or name
    data = read_checked_bytes(name, dir_fd, label, cap)
    try:
        return strict_loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise RefusedFile(f"{label} is not valid JSON ({str(exc)[:80]})") from None


def read_json(path: Path, cap: int = MAX_RUN_FILE_BYTES) -> Any | None:
    """A JSON file of a runs folder by path, checked like `read_checked_json` (folder included); None if it is
    missing or refused. For code that only needs "the content or nothing" (the trainer, the supervisor)."""
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        check_private(os.fstat(dir_fd), str(path.parent))
        return read_checked_json(path.name, dir_fd, str(path), cap)
    except (OSError, RefusedFile):
        return None
    finally:
        os.close(dir_fd)
