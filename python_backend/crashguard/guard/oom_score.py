"""The trainer volunteers: when the kernel must kill, it should kill the training run, not the editor.

The kernel's OOM killer picks the process with the highest badness: its memory (RSS, swap, page tables) plus
`oom_score_adj` x (the memory the OOM is about) / 1000. VS Code with its extension host and language servers is
often the biggest process on a workstation, so by size alone it is the one killed. A process may *raise* its own
`oom_score_adj` without any privilege (going below the lowest value a privileged process gave it, 0 by default,
needs CAP_SYS_RESOURCE), and children inherit it at fork: a trainer that raises its own before its DataLoader
workers start makes the whole run the first choice. Nothing here ever writes another process's score (the
editor's is never touched).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_OOM_SCORE_ADJ = 500  # half the memory at stake added to the trainer's badness: it goes first
OOM_SCORE_ADJ_MIN, OOM_SCORE_ADJ_MAX = -1000, 1000


def read_oom_score_adj(pid: int | str = "self") -> int | None:
    """A process's oom_score_adj (-1000..1000); None if it is gone or cannot be read."""
    try:
        return int(Path(f"/proc/{pid}/oom_score_adj").read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def check_oom_score_adj(value: object, field: str = "oom_score_adj") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not OOM_SCORE_ADJ_MIN <= value <= OOM_SCORE_ADJ_MAX:
        raise ValueError(f"{field}: expected an integer {OOM_SCORE_ADJ_MIN}..{OOM_SCORE_ADJ_MAX}, got {value!r}")
    return value


def volunteer(adj: int | None = DEFAULT_OOM_SCORE_ADJ) -> int | None:
    """Raise this process's oom_score_adj to at least `adj` (never lower it: a user who set a higher one meant
    it). None leaves it alone. Returns the score now in force (None if unreadable)."""
    current = read_oom_score_adj()
    if adj is None or current is None:
        return current
    adj = check_oom_score_adj(adj)
    if current >= adj:
        return current
    try:
        with open("/proc/self/oom_score_adj", "w", encoding="ascii") as handle:
            handle.write(str(adj))
    except OSError as exc:  # a seccomp filter or an LSM may refuse even a raise
        log.warning("could not raise oom_score_adj to %d (%s): the kernel's OOM killer may pick another process "
                    "before this one", adj, exc.strerror or exc)
    return read_oom_score_adj()


def volunteer_in_child(adj: int | None) -> None:
    """For subprocess's preexec_fn: the same raise in a forked child before it executes the trainer (errors are
    ignored there; the trainer's own hook tries again and reports)."""
    if adj is None:
        return
    try:
        if (read_oom_score_adj() or 0) < adj:
            fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
            try:
                os.write(fd, str(adj).encode())
            finally:
                os.close(fd)
    except OSError:
        pass


def restore_oom_score_adj(previous: int | None) -> int | None:
    """Put this process's oom_score_adj back to `previous` (what it was before `volunteer`), e.g. when a
    notebook's guarded block ends: the kernel must not go on preferring the notebook. Going back down needs no
    privilege as long as `previous` is not below the floor a privileged process set (the value it had was at or
    above it). Returns the score now in force."""
    if previous is None:
        return read_oom_score_adj()
    current = read_oom_score_adj()
    if current is None or current == previous:
        return current
    try:
        with open("/proc/self/oom_score_adj", "w", encoding="ascii") as handle:
            handle.write(str(check_oom_score_adj(previous)))
    except OSError as exc:
        log.warning("could not restore oom_score_adj to %d (%s): it stays %d", previous, exc.strerror or exc, current)
    return read_oom_score_adj()
