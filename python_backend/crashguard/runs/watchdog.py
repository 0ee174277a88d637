"""Why did a run end without a final status? For runs that no Crash Guard supervisor started (a user's script, a
notebook kernel), a tiny watchdog process records it: it waits on the run's pidfd, and when the run is gone without
a terminal state it marks it `crashed` with the cause.

The cause is exact when the watchdog reads the exit status from the run's zombie (`/proc/<pid>/stat`, field 52)
before the run's parent reaps it (a Python parent that has not waited yet, a notebook server between polls); a
shell reaps at once, and then the cause says the run was killed or aborted, with host RAM just before (the
kernel's OOM killer is the usual culprit when it was near 100 %). Never imports torch; ~20 MB. Started isolated
(util/isolated.py): the run's folder is its working directory, and a `crashguard/` there is never imported.

usage: python -I -m crashguard.runs.watchdog --status FILE --pid PID --create-time T
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import subprocess
import sys
from pathlib import Path

import psutil

from ..util.isolated import module_command
from .files import read_json
from .liveness import CREATE_TIME_TOLERANCE
from .status import RunState
from .supervisor import describe_exit, mark_crashed

TERMINAL = {s.value for s in RunState if s.terminal}


def start_watchdog(status_file: Path, pid: int, create_time: float) -> subprocess.Popen[bytes] | None:
    """Start the watchdog for this registration (its own session: a Ctrl-C to the run's group spares it)."""
    try:
        return subprocess.Popen([*module_command("crashguard.runs.watchdog", needs=("psutil",)),
                                 "--status", str(status_file.resolve()), "--pid", str(pid),
                                 "--create-time", repr(create_time)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, close_fds=True)
    except OSError:
        return None  # no watchdog: a crash is still reported, with an unknown cause


def zombie_returncode(pid: int) -> int | None:
    """The exit status of a terminated, not yet reaped process, as Popen.returncode (-N for signal N)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()
    if not fields or fields[0] != "Z" or len(fields) < 50:
        return None
    status = int(fields[49])  # field 52 of the whole line: the exit status in waitpid(2)'s form
    signal_number = status & 0x7F
    return -signal_number if signal_number else (status >> 8) & 0xFF


def _ours(status: object, pid: int, create_time: float) -> bool:
    return (isinstance(status, dict) and status.get("pid") == pid
            and isinstance(status.get("create_time"), (int, float))
            and abs(float(status["create_time"]) - create_time) <= CREATE_TIME_TOLERANCE)


def watch(status_file: Path, pid: int, create_time: float, interval: float = 1.0) -> bool:
    """Wait for the run to end; True if it ended without a terminal state and was marked crashed."""
    try:
        pidfd: int | None = os.pidfd_open(pid)
        if abs(psutil.Process(pid).create_time() - create_time) > CREATE_TIME_TOLERANCE:
            return False  # the pid was reused before we started: not our run
    except (ProcessLookupError, psutil.NoSuchProcess):
        pidfd = None
    ram_percent: float | None = None
    try:
        while True:
            ended = pidfd is None or bool(select.select([pidfd], [], [], interval)[0])
            status = read_json(status_file)
            if not _ours(status, pid, create_time) or status.get("state") in TERMINAL:  # type: ignore[union-attr]
                return False  # ended cleanly (or another run took the name)
            if ended:
                break
            ram_percent = psutil.virtual_memory().percent
    finally:
        if pidfd is not None:
            os.close(pidfd)
    returncode = zombie_returncode(pid)
    if returncode is not None:
        cause = describe_exit(returncode)
    else:
        cause = "killed or aborted without a final status (e.g. SIGKILL, or the kernel's OOM killer)"
        if ram_percent is not None:
            cause += f"; host RAM was at {ram_percent:.0f}% a second before"
    status = read_json(status_file)  # a run that finished as it exited has written its state by now
    if not _ours(status, pid, create_time) or status.get("state") in TERMINAL:  # type: ignore[union-attr]
        return False
    return mark_crashed(status_file, pid, returncode, cause=cause)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--status", required=True, type=Path)
    parser.add_argument("--pid", required=True, type=int)
    parser.add_argument("--create-time", required=True, type=float)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        watch(args.status, args.pid, args.create_time)
    return 0


if __name__ == "__main__":
    sys.exit(main())
