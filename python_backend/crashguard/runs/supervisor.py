"""Supervise a training child: if it dies without a terminal state (SIGKILL from the OOM killer, a segfault),
record that in its status.json, so the sidecar and the user learn why it is gone.

It also starts the child where it belongs: in its memory cgroup when containment was asked for
(runs/containment.py), volunteering to the OOM killer (guard/oom_score.py) from its first instruction. While the
child runs it reads the OOM-kill counters every half second, so a SIGKILL death is told apart: the kernel's OOM
killer (a counter rose in that last half second) or someone's kill -9 (runs/oom_cause.py).

Light on purpose (never imports torch): the supervisor must outlive whatever kills the trainer.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from ..guard.oom_score import volunteer_in_child
from ..monitor.memcg import MemcgDir, memcg_of
from ..util.json_io import write_json_atomic
from .containment import ContainedGroup, Containment, scope_group
from .crash_seal import seal, seal_key
from .files import read_json
from .oom_cause import oom_cause, read_counters
from .resume import crashguard_command
from .status import RunState

log = logging.getLogger(__name__)
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Set for the supervised trainer: it then starts no watchdog of its own (this supervisor records its crash).
SUPERVISED_ENV = "CRASHGUARD_SUPERVISED"
POLL_SECONDS = 0.5  # how often the OOM-kill counters are read while the child runs


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
                  last_event=f"crashed: {cause}", crash_seal=None)
    key = seal_key(create=True)
    if key is not None:  # the proof that this process, not a file, recorded the crash (runs/crash_seal.py)
        status["crash_seal"] = seal(status_file.parent.resolve(), status, key)
    write_json_atomic(status_file, status, durable=True)
    return True


def exit_code(returncode: int) -> int:
    """The child's code; a signal death as the shell reports it (128 + signal number)."""
    return 128 - returncode if returncode < 0 else returncode


def _say(message: str) -> None:
    print(f"crashguard: {message}", file=sys.stderr, flush=True)


def _popen(argv: list[str], preexec: Callable[[], None] | None) -> subprocess.Popen[bytes]:
    """Popen in a process group of its own, running `preexec` in the child before exec (process_group= is
    Python 3.11+; os.setpgrp in the child is the same on 3.10)."""
    env = {**os.environ, SUPERVISED_ENV: "1"}
    if sys.version_info >= (3, 11):  # no threads here: preexec_fn is safe
        return subprocess.Popen(argv, process_group=0, preexec_fn=preexec, env=env)

    def in_child() -> None:
        os.setpgrp()
        if preexec is not None:
            preexec()

    return subprocess.Popen(argv, preexec_fn=in_child, env=env)


def _start(command: Sequence[str], containment: Containment | None, oom_score_adj: int | None
           ) -> tuple[subprocess.Popen[bytes], ContainedGroup | None, MemcgDir | None]:
    """Start the child in its group (if any), volunteering; (child, the group we made, its memory group)."""
    group: ContainedGroup | None = None
    if containment is not None and containment.kind in ("cgroup-v1", "cgroup-v2"):
        group = ContainedGroup(containment)
        try:
            group.create()
        except OSError as exc:
            _say(f"containment unavailable: could not create {group.directory}: {exc.strerror or exc}")
            group = None
        else:
            _say(containment.describe())
    elif containment is not None:
        _say(containment.describe())

    def in_child() -> None:  # after fork, before exec: the trainer's first page is charged to its group
        if group is not None:
            group.enter_in_child()
        volunteer_in_child(oom_score_adj)

    argv = containment.wrap(command) if containment is not None else list(command)
    preexec = in_child if group is not None or oom_score_adj is not None else None
    # A process group of its own: a terminal Ctrl-C reaches the child once (forwarded), not twice.
    try:
        child = _popen(argv, preexec)
    except subprocess.SubprocessError as exc:  # the move into the group was refused
        _say(f"containment unavailable: could not move the trainer into {group.directory if group else '?'}: "
             f"{exc}; running it uncontained")
        if group is not None:
            group.remove()
        group = None
        child = _popen(list(command), lambda: volunteer_in_child(oom_score_adj))
    memcg = group.memcg if group is not None else None
    if containment is not None and containment.kind == "systemd-scope" and containment.unit:
        memcg, problem = scope_group(child.pid, containment.unit)
        if problem:
            _say(f"containment incomplete: {problem}")
    # Uncontained, the group it shares (a login session's) still counts its OOM kills: better than the system's.
    return child, group, memcg or memcg_of(child.pid)


def supervise(command: Sequence[str], status_file: Path, containment: Containment | None = None,
              oom_score_adj: int | None = None) -> int:
    """Run `command`, forward SIGINT/SIGTERM (SIGHUP as SIGTERM) to it, wait, and fix up a missing end state.
    `containment`: start it in its memory cgroup (see runs/containment.py); `oom_score_adj`: its score from its
    first instruction (the trainer's hook raises it again at registration)."""
    child, group, memcg = _start(command, containment, oom_score_adj)

    def forward(signum: int, _frame: FrameType | None) -> None:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM if signum == signal.SIGHUP else signum)

    previous = {s: signal.signal(s, forward) for s in _FORWARDED}
    try:
        # The last two readings taken while the child was alive: a victim of the OOM killer still runs for a
        # moment after its kill was counted (it is being reaped), so the older one is compared with the end.
        readings = [read_counters(memcg)]
        while True:
            try:
                returncode = child.wait(timeout=POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                readings = [readings[-1], read_counters(memcg)]
            except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for clarity
                continue
        before, after = readings[0], read_counters(memcg)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    cause = None
    if returncode < 0:
        cause = oom_cause(before, after, sigkill=returncode == -signal.SIGKILL)
    if mark_crashed(status_file, child.pid, returncode, cause):
        _say(f"training process {child.pid} {cause or describe_exit(returncode)}; marked crashed in {status_file}")
    if group is not None:
        note = group.remove()
        if note:
            _say(note)
    return exit_code(returncode)


def trainer_command(argv: Sequence[str]) -> list[str]:
    """`python -I -m crashguard <argv>` with this interpreter, isolated from the working folder (util/isolated.py);
    argv must ask for the unsupervised trainer."""
    return [*crashguard_command(), *argv]


__all__ = ["SUPERVISED_ENV", "describe_exit", "exit_code", "mark_crashed", "supervise", "trainer_command"]
