"""`--ensure`: make sure this user's monitor of this build runs, starting it DETACHED when none does, and say where
it listens (one JSON line on stdout). A window's extension runs this, then connects to the socket itself.

No start-up race: the monitor holds an flock on its lock file for its whole life. A starter that finds no monitor
takes that lock itself and hands it to the monitor it spawns (the child inherits the locked file description), so
between "no monitor" and "a monitor" the lock is never free; a starter that finds the lock taken waits for the
socket of whoever holds it. N windows starting at once end with one monitor.

Where the platform has no peer credentials (macOS), `endpoint()` refuses before anything is created and the
starter exits with its own code (main.py's EXIT_NO_SHARED_MONITOR): each window then runs a monitor of its own over
stdio. A socket or lock that is not this user's is another matter: a refusal that stays visible (EXIT_UNSAFE).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .endpoint import Endpoint, check_socket, open_lock

ENSURE_FLAG = "--ensure"
DAEMON_FLAG = "--daemon"
LOCK_FD_FLAG = "--lock-fd"
START_TIMEOUT = 20.0  # the monitor imports pygls and takes its first reading: ~1 s, far more on a loaded machine
LOG_KEEP_BYTES = 1 << 20  # a monitor's log above this is moved aside (one old copy) when the next one starts


class MonitorFailed(Exception):
    """No monitor answered: the message says why (the start failed, its log's last lines)."""


@dataclass(frozen=True)
class Found:
    socket: Path
    pid: int | None
    started: bool  # this call started it
    python: str | None  # the monitor's interpreter and version, as it recorded them in its lock file
    build: str

    def to_json(self) -> dict[str, Any]:
        return {"socket": str(self.socket), "pid": self.pid, "started": self.started, "python": self.python,
                "build": self.build}


def holder(ep: Endpoint) -> dict[str, Any]:
    """What the monitor holding the lock recorded about itself (pid, python); {} when unreadable."""
    try:
        with open(ep.lock, "rb") as f:
            data = json.loads(f.read(4096))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def answers(path: Path) -> bool:
    """Whether a monitor accepts connections on `path` (a socket of this user only: UnsafeEndpoint otherwise)."""
    if not check_socket(path):
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    probe.settimeout(2.0)
    try:
        probe.connect(os.fspath(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def daemon_argv(argv: Sequence[str] | None = None, executable: str | None = None) -> list[str]:
    """The command that started this process (interpreter options included), as the monitor: `--ensure` becomes
    `--daemon`. The launcher (`python -I -S bundled/tool/sidecar.py --ensure`) and `crashguard serve --ensure` both
    start the monitor from exactly the code they run."""
    original = list(argv if argv is not None else sys.orig_argv)
    if ENSURE_FLAG not in original[1:]:
        raise ValueError(f"{ENSURE_FLAG} not in {original}")
    return [executable or sys.executable] + [DAEMON_FLAG if a == ENSURE_FLAG else a for a in original[1:]]


def _rotate(log: Path) -> None:
    try:
        if log.stat().st_size > LOG_KEEP_BYTES:
            os.replace(log, log.with_name(log.name + ".1"))
    except OSError:
        pass


def _spawn(ep: Endpoint, command: list[str], lock_fd: int, cwd: str | None) -> subprocess.Popen[bytes]:
    """The monitor, in a session of its own (it outlives the window that started it), holding our lock."""
    _rotate(ep.log)
    log_fd = os.open(ep.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        return subprocess.Popen([*command, LOCK_FD_FLAG, str(lock_fd)], stdin=subprocess.DEVNULL, stdout=log_fd,
                                stderr=log_fd, pass_fds=(lock_fd,), start_new_session=True, cwd=cwd)
    finally:
        os.close(log_fd)


def _log_tail(log: Path, lines: int = 8) -> str:
    try:
        text = log.read_bytes()[-8192:].decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def ensure_monitor(ep: Endpoint, command: list[str], timeout: float = START_TIMEOUT, cwd: str | None = None) -> Found:
    """The running monitor of `ep`, started with `command` when there is none. Raises MonitorFailed, or
    UnsafeEndpoint for a socket or lock that is not this user's."""
    deadline = time.monotonic() + timeout
    spawned: subprocess.Popen[bytes] | None = None
    delay = 0.02
    while True:
        if answers(ep.socket):
            about = holder(ep)
            pid = about.get("pid")
            python = about.get("python")
            return Found(ep.socket, pid if isinstance(pid, int) else None, spawned is not None,
                         python if isinstance(python, str) else None, ep.build)
        if spawned is None:
            lock_fd = open_lock(ep.lock)
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # a monitor holds it (starting, or about to answer): wait for its socket
            else:
                spawned = _spawn(ep, command, lock_fd, cwd)
            finally:
                os.close(lock_fd)  # the monitor's inherited copy keeps the lock
        elif spawned.poll() is not None:
            raise MonitorFailed(f"the memory monitor exited with code {spawned.returncode} while starting; "
                                f"the end of {ep.log}:\n{_log_tail(ep.log)}")
        if time.monotonic() > deadline:
            raise MonitorFailed(f"no memory monitor answered on {ep.socket} within {timeout:g} s; "
                                f"the end of {ep.log}:\n{_log_tail(ep.log)}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
