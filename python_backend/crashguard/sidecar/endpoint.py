"""Where this user's shared memory monitor lives on this host: a socket, a lock file and a log, named per build, in
the private runtime folder (`crashguard.util.user_dirs.runtime_dir()`, 0700).

The build in the names (protocol version, crashguard version, `-dev` for a development host running the monitor
from a source checkout) keeps two builds side by side: windows of another version start and use a monitor of their
own instead of one whose protocol they may not speak. Plain files and the standard library only: the starter
(`--ensure`) imports this before anything heavy.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from ..util.user_dirs import runtime_dir
from ..util.version import __version__
from .handshake import PROTOCOL_VERSION

SOCKET_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes on Linux, with the terminating NUL


class UnsafeEndpoint(Exception):
    """The socket (or lock) found where the monitor should be is not this user's own: never used (fail closed)."""


class NoSharedMonitor(Exception):
    """This platform cannot host the shared monitor safely (no peer credentials to tell who connects). Not a
    refusal of something found: nothing is there to distrust, so a window runs a monitor of its own over stdio."""


@dataclass(frozen=True)
class Endpoint:
    build: str
    socket: Path
    lock: Path  # flock'ed by the monitor for its whole life; holds its pid
    log: Path  # the monitor's stderr (it has no terminal)


def build_id(development: bool = False) -> str:
    version = re.sub(r"[^A-Za-z0-9._+-]", "_", __version__)
    return f"p{PROTOCOL_VERSION}-{version}" + ("-dev" if development else "")


def endpoint(development: bool = False, folder: Path | None = None) -> Endpoint:
    """The paths of this user's monitor of this build; raises NoSharedMonitor where the platform has no peer
    credentials (before anything is created), UnsafeDirectory (util.user_dirs) for a runtime folder that is not
    private, UnsafeEndpoint for a path too long for a unix socket."""
    if not hasattr(socket, "SO_PEERCRED"):  # Linux's: without it the monitor could not tell who connects
        raise NoSharedMonitor("this platform has no peer credentials (SO_PEERCRED), which the shared memory "
                              "monitor needs to admit only this user's windows")
    where = folder if folder is not None else runtime_dir()
    build = build_id(development)
    found = Endpoint(build, where / f"monitor-{build}.sock", where / f"monitor-{build}.lock",
                     where / f"monitor-{build}.log")
    if len(os.fsencode(found.socket)) > SOCKET_PATH_MAX:
        raise UnsafeEndpoint(f"{found.socket} is longer than a unix socket path may be ({SOCKET_PATH_MAX} bytes); "
                             "set XDG_RUNTIME_DIR to a shorter private folder")
    return found


def check_socket(path: Path) -> bool:
    """True when `path` is a socket of this user that nobody else may open; False when there is none; raises
    UnsafeEndpoint for anything else (another user's socket, a symlink, a plain file)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(st.st_mode):
        raise UnsafeEndpoint(f"{path} is not a socket (mode {stat.filemode(st.st_mode)})")
    if st.st_uid != os.geteuid():
        raise UnsafeEndpoint(f"{path} belongs to uid {st.st_uid}, not to this user ({os.geteuid()})")
    if st.st_mode & 0o077:
        raise UnsafeEndpoint(f"{path} is open to other users (mode {stat.filemode(st.st_mode)})")
    return True


def open_lock(path: Path) -> int:
    """The lock file, opened read-write (created 0600), never through a symlink; raises UnsafeEndpoint for one
    that is not this user's plain file."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise UnsafeEndpoint(f"{path}: {exc.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_nlink != 1:
        os.close(fd)
        raise UnsafeEndpoint(f"{path} is not a private file of this user")
    return fd


def hold_lock(ep: Endpoint, inherited: int | None) -> int | None:
    """The lock file's descriptor, locked: the one the starter handed over (checked to be that very file), else
    opened here. None when another monitor of this build holds it."""
    fd = inherited if inherited is not None else open_lock(ep.lock)
    if inherited is not None:
        st, here = os.fstat(fd), os.lstat(ep.lock)
        if (st.st_dev, st.st_ino) != (here.st_dev, here.st_ino):
            raise UnsafeEndpoint(f"descriptor {fd} is not the lock file {ep.lock}")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # our own inherited lock: granted again at once
    except BlockingIOError:
        os.close(fd)
        return None
    os.set_inheritable(fd, False)  # nothing this process might start holds it
    about = {"pid": os.getpid(), "python": sys.version.split()[0], "executable": sys.executable}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(about).encode(), 0)
    return fd


def bind(path: os.PathLike[str]) -> socket.socket:
    """The listening socket at `path`, 0600 from its creation. The caller holds the lock: whatever was at `path`
    is a dead monitor's leftover."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    umask = os.umask(0o177)
    try:
        sock.bind(os.fspath(path))
    finally:
        os.umask(umask)
    os.chmod(path, 0o600)
    sock.listen(64)
    sock.setblocking(False)
    return sock


def remove_if_ours(path: os.PathLike[str], identity: tuple[int, int]) -> None:
    with contextlib.suppress(OSError):
        st = os.lstat(path)
        if (st.st_dev, st.st_ino) == identity:
            os.unlink(path)
