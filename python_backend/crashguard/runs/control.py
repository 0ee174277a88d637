"""Control requests to registered runs, from the sidecar or the CLI: cleanup and checkpoint-and-stop.

A request is a file in the run's control folder; the run answers at its next step boundary with
`<id>.done.json` (see runs/hook.py). Nothing is written to a run, and no signal sent, unless it was verified just
before (runs/liveness.py: pid, create time, user, and the run's lock held by that very process). Every write and
read goes through the run folder opened without following symlinks, so nothing lands outside the runs folder. The
only signal ever sent is SIGTERM, through a pidfd, to a verified run that did not answer a checkpoint-and-stop in
time (the hook turns SIGTERM into checkpoint-and-stop too).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from ..guard.cleanup import CleanupReport, emergency_cleanup
from ..monitor.host import read_ram
from ..monitor.processes import tree_rss
from .files import RefusedFile, ensure_checked_dir, open_run_dir, read_checked_json, unlink_at, write_json_at
from .liveness import send_signal, verify_run
from .registry import Registry, RunRecord, RunScanner
from .status import ControlAction, RunState, control_name

log = logging.getLogger(__name__)
POLL_SECONDS = 0.05
DEFAULT_CLEANUP_TIMEOUT = 10.0
DEFAULT_STOP_TIMEOUT = 30.0


@dataclass(frozen=True)
class RunCleanup:
    run: str
    rank: int
    pid: int | None
    ok: bool
    report: dict[str, Any] | None  # the run's own CleanupReport (measured inside that process)
    error: str | None
    rss_before: int | None = None  # the run's process tree RSS, measured by the sidecar before the request
    rss_after: int | None = None  # ... and after the answer


@dataclass(frozen=True)
class CleanupResult:
    ram_before: int  # host RAM used, bytes
    ram_after: int
    sidecar: CleanupReport | None
    runs: list[RunCleanup] = field(default_factory=list)

    @property
    def freed(self) -> int:
        return self.ram_before - self.ram_after

    def to_wire_dict(self) -> dict[str, Any]:
        return {"ram_before": self.ram_before, "ram_after": self.ram_after, "freed": self.freed,
                "sidecar": self.sidecar.to_dict() if self.sidecar else None, "runs": self.runs}


@dataclass(frozen=True)
class StopResult:
    run: str
    ok: bool
    state: str
    checkpoint: str | None
    message: str
    signalled: bool


@dataclass
class _Pending:
    record: RunRecord
    request_id: str
    control_fd: int  # the run's control folder, opened checked; closed by _close
    proc: psutil.Process
    answer: dict[str, Any] | None = None
    error: str | None = None

    @property
    def answer_name(self) -> str:
        return f"{self.request_id}.done.json"


def _recheck(record: RunRecord) -> str | None:
    """None if the record's process is still the verified run (fresh look at the folder, the lock, the process)."""
    try:
        with open_run_dir(record.run_dir.parent, record.name) as run_fd:
            verdict = verify_run(run_fd, record.status)
    except (OSError, RefusedFile) as exc:
        return str(exc)
    return None if verdict.controllable else (verdict.reason or "not controllable")


def _send(record: RunRecord, action: ControlAction, urgent: bool = False) -> _Pending | str:
    """Write a request to a verified run; an error string if the run may not be controlled. `urgent`: memory is
    critical, the run abandons the step in flight rather than finishing it."""
    try:
        with open_run_dir(record.run_dir.parent, record.name) as run_fd:
            verdict = verify_run(run_fd, record.status)
            if not verdict.controllable or verdict.process is None:
                return verdict.reason or "not controllable"
            control_fd = ensure_checked_dir(control_name(record.rank), run_fd)
    except (OSError, RefusedFile) as exc:
        return str(exc)
    request_id = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}"  # sortable: the run handles requests in order
    try:
        write_json_at(control_fd, f"{request_id}.json",
                      {"id": request_id, "action": action.value, "sent": time.time(), "urgent": urgent})
    except OSError as exc:
        os.close(control_fd)
        return f"cannot write the request: {exc}"
    return _Pending(record, request_id, control_fd, verdict.process)


def _read_answer(item: _Pending) -> None:
    try:
        answer = read_checked_json(item.answer_name, item.control_fd)
    except FileNotFoundError:
        return
    except (OSError, RefusedFile) as exc:
        item.error = f"answer refused: {exc}"
        return
    if isinstance(answer, dict) and answer.get("id") == item.request_id:
        item.answer = answer
    else:
        item.error = "answer refused: not an answer to this request"
    unlink_at(item.control_fd, item.answer_name)


def _wait(pending: list[_Pending], timeout: float) -> None:
    """Poll for answers until all are in, their processes are gone, or the timeout passes."""
    deadline = time.monotonic() + timeout
    waiting = list(pending)
    while waiting:
        for item in list(waiting):
            _read_answer(item)
            if item.answer is not None or item.error is not None:
                waiting.remove(item)
            elif not _running(item.proc):
                item.error = "the run's process exited before answering"
                waiting.remove(item)
        if not waiting or time.monotonic() >= deadline:
            break
        time.sleep(POLL_SECONDS)
    for item in waiting:
        item.error = f"no answer within {timeout:g} s (the run handles requests between steps)"


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _close(item: _Pending) -> None:
    """Take back an unanswered request (so the run does not act on it long after it mattered); close the folder."""
    if item.answer is None:
        unlink_at(item.control_fd, f"{item.request_id}.json")
    os.close(item.control_fd)


def request_cleanup(records: Sequence[RunRecord], timeout: float = DEFAULT_CLEANUP_TIMEOUT) -> list[RunCleanup]:
    """Ask every given run to clean up, concurrently; what each one freed, measured in that process."""
    results: list[RunCleanup] = []
    pending: list[_Pending] = []
    before: dict[int, int | None] = {}
    for record in records:
        pid = record.status.pid
        tree = tree_rss(pid) if record.verdict.alive else None
        sent = _send(record, ControlAction.CLEANUP)
        if isinstance(sent, str):
            results.append(RunCleanup(record.name, record.rank, pid, False, None, f"not sent: {sent}"))
            continue
        before[id(sent)] = tree.rss if tree else None
        pending.append(sent)
    _wait(pending, timeout)
    for item in pending:
        _close(item)
        after = tree_rss(item.record.status.pid)
        answer = item.answer or {}
        ok = bool(answer.get("ok")) and item.error is None
        error = item.error or (answer.get("error") if not ok else None)
        report = answer.get("report") if isinstance(answer.get("report"), dict) else None
        results.append(RunCleanup(item.record.name, item.record.rank, item.record.status.pid, ok, report, error,
                                  rss_before=before[id(item)], rss_after=after.rss if after else None))
    return results


def cleanup_runs(runs_dir: str | Path, names: Sequence[str] | None = None,
                 timeout: float = DEFAULT_CLEANUP_TIMEOUT, own_cleanup: bool = True,
                 registry: RunScanner | None = None) -> CleanupResult:
    """Emergency cleanup across processes: this process's own cleanup, then a cleanup request to every live
    registered run (or only those named), with RAM before/after and a report per process.

    Plain Python, usable from the CLI (`crashguard cleanup`) as well as from the sidecar.
    """
    registry = registry or Registry(runs_dir)
    ram_before = read_ram().used
    sidecar = emergency_cleanup() if own_cleanup else None
    records = registry.scan()
    results: list[RunCleanup] = []
    if names is not None:
        wanted = set(names)
        for missing in sorted(wanted - {r.name for r in records}):
            results.append(RunCleanup(missing, 0, None, False, None, "no run with this name"))
        records = [r for r in records if r.name in wanted]
    live = [r for r in records if r.verdict.alive]
    if names is not None:  # a named run that is not running is worth an explicit answer
        for record in records:
            if not record.verdict.alive:
                results.append(RunCleanup(record.name, record.rank, record.status.pid, False, None,
                                          f"not running ({record.state})"))
    results.extend(request_cleanup(live, timeout))
    return CleanupResult(ram_before=ram_before, ram_after=read_ram().used, sidecar=sidecar, runs=results)


def _wait_for_end(proc: psutil.Process, timeout: float) -> None:
    """Until the run's process exits (the hook answers in finish(), just before the process ends). A zombie counts
    as ended: its parent, not the sidecar, reaps it."""
    deadline = time.monotonic() + timeout
    while _running(proc) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)


def stop_run(runs_dir: str | Path, name: str, timeout: float = DEFAULT_STOP_TIMEOUT,
             registry: Registry | None = None, urgent: bool = False) -> StopResult:
    """Checkpoint-and-stop every live rank of the run `name`; SIGTERM (to verified ranks only) if one does not
    answer within `timeout` seconds. `urgent` (the escalation ladder, memory critical) asks the run to abandon the
    step in flight and checkpoint the last completed one at once."""
    registry = registry or Registry(runs_dir)
    records = registry.find(name)
    if not records:
        return StopResult(name, False, "unknown", None, f"no run named {name!r} in {registry.runs_dir}", False)
    live = [r for r in records if r.verdict.alive]
    if not live:
        main = records[0]
        return StopResult(name, False, main.state, main.status.checkpoint,
                          f"run {name} is not running ({main.state})", False)
    pending: list[_Pending] = []
    problems: list[str] = []
    for record in live:
        request = _send(record, ControlAction.CHECKPOINT_AND_STOP, urgent)
        if isinstance(request, str):
            problems.append(f"rank {record.rank}: not sent: {request}")
        else:
            pending.append(request)
    _wait(pending, timeout)
    signalled = False
    for item in pending:
        _close(item)
        if item.answer is not None:
            _wait_for_end(item.proc, timeout)
            continue
        # No answer: SIGTERM through a handle on the verified process, re-verified after the handle was taken.
        pid = item.record.status.pid
        sent, how = send_signal(pid, signal.SIGTERM, functools.partial(_recheck, item.record))
        if sent:
            signalled = True
            log.warning("run %s (pid %d) did not answer checkpoint-and-stop: sent SIGTERM through a pidfd", name, pid)
            _wait_for_end(item.proc, timeout)
        else:
            problems.append(f"rank {item.record.rank}: {item.error}; not signalled ({how})")
    final = registry.find(name)
    main = next((r for r in final if r.rank == 0), final[0] if final else records[0])
    states = sorted({r.state for r in final} or {main.state})
    ok = states == [RunState.STOPPED.value] and not problems
    if ok:
        message = f"run {name} stopped" + (" after SIGTERM" if signalled else "")
        if main.status.checkpoint:
            message += f"; checkpoint {main.status.checkpoint}"
    else:
        message = "; ".join([f"run {name} did not stop cleanly: state {', '.join(states)}", *problems])
    return StopResult(name, ok, main.state, main.status.checkpoint, message, signalled)
