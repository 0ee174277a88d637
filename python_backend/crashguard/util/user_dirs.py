"""The user's own folders for Crash Guard, outside every workspace: per-user state that must survive restarts (the
monitor's witness of runs it saw alive, keys) and a runtime folder for what lives only while the user is logged in
(the monitor's socket).

Both are created 0700 and checked on every call: a real folder (never a symlink), owned by this user, open to
nobody else. A folder that fails the check is never used (UnsafeDirectory): another user who pre-creates
`/tmp/crashguard-<uid>` gets no way in, Crash Guard fails closed.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

APP = "crashguard"


class UnsafeDirectory(Exception):
    """A folder Crash Guard would keep private state in is not private; the message says why."""


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (0700) if missing and return it once it is a real folder of this user that nobody else can
    read or write; raise UnsafeDirectory otherwise. Parents are created with the user's umask."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise UnsafeDirectory(f"{path} is not a folder (a symlink?): {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            raise UnsafeDirectory(f"{path} belongs to uid {st.st_uid}, not to this user ({os.geteuid()})")
        if st.st_mode & 0o077:
            os.fchmod(fd, 0o700)  # ours: close it (a umask of 002 or a copy may have opened it)
    finally:
        os.close(fd)
    return path


def state_dir() -> Path:
    """$XDG_STATE_HOME/crashguard (default ~/.local/state/crashguard), private."""
    base = os.environ.get("XDG_STATE_HOME") or ""
    root = Path(base) if os.path.isabs(base) else Path.home() / ".local" / "state"
    return ensure_private_dir(root / APP)


def runtime_dir() -> Path:
    """$XDG_RUNTIME_DIR/crashguard when the session has a runtime folder of this user's, else
    /tmp/crashguard-<uid>; private either way."""
    base = os.environ.get("XDG_RUNTIME_DIR") or ""
    if os.path.isabs(base):
        try:
            st = os.stat(base)
        except OSError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o077:
            return ensure_private_dir(Path(base) / APP)
    return ensure_private_dir(Path("/tmp") / f"{APP}-{os.geteuid()}")
