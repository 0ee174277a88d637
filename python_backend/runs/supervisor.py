"""Supervise a training child: if it dies without a terminal state (SIGKILL from the OOM killer, a segfault),
record that in its status.json, so the sidecar and the user learn why it is gone.

Light on purpose (never imports torch): the supervisor must outlive whatever kills the trainer.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from .files import read_json, write_json_atomic
from .status import RunState

log = logging.getLogger(__name__)
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {-returncode} ({name})"
    return f"exited with code {returncode} without a final status"


def mark_crashed(status_file: Path, pid: int, returncode: int | None, cause: str | None = None) -> bool:
    """Write state 'crashed' (keeping the child's other fields) if the status is the child's and not terminal.
    The cause is `cause`, else what `returncode` says."""
    status = read_json(status_file)
    if not isinstance(status, dict) or status.get("pid") != pid:
        return False  # the child never registered (refused before starting): nothing to correct
    if status.get("state") in {s.value for s in RunState if s.terminal}:
        return False
    cause = cause or describe_exit(returncode if returncode is not None else 0)
    status.update(state=RunState.CRASHED.value, exit_cause=cause, updated=time.time(),
                  last_event=f"crashed: {cause}")
    write_json_atomic(status_file, status, durable=True)
    return True


def exit_code(returncode: int) -> int:
    """The child's code; a signal death as the shell reports it (128 + signal number)."""
    return 128 - returncode if returncode < 0 else returncode


def supervise(command: Sequence[str], status_file: Path) -> int:
    """Run `command`, forward SIGINT/SIGTERM (SIGHUP as SIGTERM) to it, wait, and fix up a missing end state."""
    # A process group of its own: a terminal Ctrl-C reaches the child once (forwarded), not twice.
    # (Popen's process_group= is Python 3.11+; os.setpgrp in the child is the same on 3.10.)
    group = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
    child = subprocess.Popen(list(command), **group)

    def forward(signum: int, _frame: FrameType | None) -> None:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM if signum == signal.SIGHUP else signum)

    previous = {s: signal.signal(s, forward) for s in _FORWARDED}
    try:
        while True:
            try:
                returncode = child.wait()
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for clarity
                continue
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if mark_crashed(status_file, child.pid, returncode):
        print(f"crashguard: training process {child.pid} {describe_exit(returncode)}; marked crashed in "
              f"{status_file}", file=sys.stderr)
    return exit_code(returncode)


def trainer_command(argv: Sequence[str]) -> list[str]:
    """`python -m python_backend <argv>` with this interpreter (argv must ask for the unsupervised trainer)."""
    return [sys.executable, "-m", "python_backend", *argv]


__all__ = ["describe_exit", "exit_code", "mark_crashed", "supervise", "trainer_command"]
