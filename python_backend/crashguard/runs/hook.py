"""The trainer-side hook: a training loop registers, keeps its status current and honours control requests.

Any loop can use it:

    hook = RunHook("brats-safe", runs_dir="runs", config="config/safe_training.json")
    hook.start()
    for step in ...:
        ...  # one optimizer step
        hook.step_boundary(step=step, loss=loss)
        if hook.stop_requested:
            path = save_checkpoint(...)
            hook.finish(RunState.STOPPED, checkpoint=path)
            break
    hook.finish(RunState.FINISHED)

Control requests are handled only at step boundaries, where no half-finished step holds tensors, except an
urgent checkpoint-and-stop: with `watch_urgent(checkpoint)` a watcher thread (runs/urgent.py) writes the checkpoint
of the last completed step at once and ends the run without waiting for the step in flight.

The run folder and its control folder are opened once, without following symlinks, and held: the status, the lock
and every control file are read, written and removed relative to those descriptors. A run folder or `control/`
swapped for a symlink after the run started therefore never redirects a write or a delete outside `runs/`; a
request's id must be its own file's plain name (REQUEST_ID) before it names an answer file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import psutil

from ..guard.cleanup import CleanupReport, emergency_cleanup
from ..guard.oom_score import DEFAULT_OOM_SCORE_ADJ, check_oom_score_adj, volunteer
from . import lock
from .event_log import EVENTS_FILE, EventLog
from .files import RefusedFile, check_private, ensure_checked_dir, read_checked_json, unlink_at, write_json_at
from .status import (
    REQUEST_ID,
    ControlAction,
    RunState,
    RunStatus,
    coerce_field,
    control_dir,
    control_name,
    lock_path,
    status_name,
    status_path,
    valid_run_name,
)
from .urgent import MAX_BYTES as MAX_REQUEST_BYTES
from .urgent import UrgentWatcher, end_process_now, interactive, interrupt_main_thread

log = logging.getLogger(__name__)
STEP_EMA_WEIGHT = 0.2  # of the newest step in the published typical step time (status.step_seconds)


class RunHook:
    def __init__(self, name: str, runs_dir: str | os.PathLike[str] = "runs",
                 config: str | os.PathLike[str] | None = None, rank: int = 0, world_size: int = 1,
                 write_interval: float = 1.0, cleanup: Callable[[], CleanupReport] = emergency_cleanup,
                 oom_score_adj: int | None = DEFAULT_OOM_SCORE_ADJ) -> None:
        """`oom_score_adj`: the score the run volunteers with when it registers, so the kernel's OOM killer takes
        it (and its DataLoader workers, who inherit it) before the editor; None leaves the score alone."""
        if not valid_run_name(name):
            raise ValueError(f"run name {name!r}: use letters, digits, '.', '_' or '-' (it names a folder)")
        if isinstance(world_size, bool) or not isinstance(world_size, int) or not 1 <= world_size <= 65_536:
            raise ValueError(f"world_size must be an integer 1-65536, got {world_size!r}")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"rank must be an integer 0-{world_size - 1}, got {rank!r}")
        self._oom_score_adj = None if oom_score_adj is None else check_oom_score_adj(oom_score_adj)
        self.run_dir = Path(runs_dir).resolve() / name
        self._status_file = status_path(self.run_dir, rank)
        self._control_dir = control_dir(self.run_dir, rank)
        self._lock_file = lock_path(self.run_dir, rank)
        self._run_fd: int | None = None  # the run folder, opened checked and held (see the module's docstring)
        self._control_fd: int | None = None  # its control folder, likewise
        self._locked = False
        self._write_interval = write_interval
        self._cleanup = cleanup
        self._last_write = 0.0
        self._pending_stop: list[str] = []  # ids of checkpoint_and_stop requests to answer in finish()
        self._signal_stop = False
        self._step_mark: tuple[Any, float] | None = None  # (step, when it was reached) for the step time
        self._ended = False  # a terminal state is written: later writes (another thread's) must not undo it
        self._write_lock = threading.RLock()
        self._urgent: UrgentWatcher | None = None
        self._process = psutil.Process(os.getpid())
        # The run's history (events.jsonl), kept by rank 0 alone: the ranks act on the same agreed decisions.
        self.events = EventLog(self.run_dir / EVENTS_FILE) if rank == 0 else None
        self.status = RunStatus(
            name=name, pid=os.getpid(), create_time=self._process.create_time(), rank=rank,
            world_size=world_size, config=str(Path(config).resolve()) if config else None,
        )

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Register: take the run's lock, then write the first status (so no status exists without the lock).
        Raises RunLocked if another live process holds this run (rank), RefusedFile if the run folder or its
        control folder is a symlink or belongs to someone else."""
        self._hold_run_dir()
        self._acquire_lock()
        if self.events is not None:
            self.events.open()  # a planted link refuses the run here, before anything else is written
        control_fd = self._hold_control_dir()
        for stale in _request_names(control_fd):  # requests addressed to an earlier process
            unlink_at(control_fd, stale)
        now = time.time()
        self.status.started = now
        self.status.state = RunState.RUNNING.value
        self._write()
        _nudge(self.run_dir.parent)

    def finish(self, state: RunState, checkpoint: str | Path | None = None, exit_cause: str | None = None) -> None:
        with self._write_lock:
            if self._ended:
                return  # an urgent stop ended the run from the watcher thread; its state stands
            if checkpoint is not None:
                self.status.checkpoint = str(checkpoint)
            self.status.state = state.value
            self.status.exit_cause = exit_cause
            self._write(final=True)
            if self._urgent is not None:
                self._urgent.stop()
        for request_id in self._pending_stop:
            self._answer(request_id, ControlAction.CHECKPOINT_AND_STOP, ok=state is RunState.STOPPED,
                         report={"checkpoint": self.status.checkpoint, "state": state.value})
        self._pending_stop.clear()
        if self.events is not None:
            self.events.close()
        if state.terminal:
            # The run is over and never controlled again: free its name for the next run (in this process or
            # another). A process that dies without finish() loses the lock with its last descriptor.
            lock.release(self._lock_file)
            self._locked = False
            self._release_dirs()

    def watch_urgent(self, checkpoint: Callable[[], str | Path | None],
                     end: Literal["auto", "exit", "interrupt"] = "auto") -> None:
        """Honour urgent checkpoint-and-stop requests at once (call after start()). `checkpoint` runs on the
        watcher thread: it must take the training step's lock and write the last completed step, returning the
        path. Then the run is marked stopped, the request answered, and the run ended: `exit` ends the process,
        `interrupt` raises UrgentStop in the main thread (`auto`: interrupt in a notebook kernel, else exit)."""
        mode = ("interrupt" if interactive() else "exit") if end == "auto" else end

        def on_urgent(request_id: str) -> None:
            self._urgent_stop(request_id, checkpoint, mode)

        self._urgent = UrgentWatcher(os.dup(self._hold_control_dir()), on_urgent)  # the watcher closes its copy
        self._urgent.start()

    def _urgent_stop(self, request_id: str, checkpoint: Callable[[], str | Path | None], mode: str) -> None:
        if self._ended:  # the run ended as the request came in: nothing to stop, and the process is not ours to end
            self._answer(request_id, ControlAction.CHECKPOINT_AND_STOP, ok=False, error="the run has ended",
                         report={"checkpoint": self.status.checkpoint, "state": self.status.state})
            return
        self.event("urgent checkpoint-and-stop: abandoning the step in flight", state=RunState.STOPPING.value)
        self.log("urgent_stop", "urgent checkpoint-and-stop: abandoning the step in flight")
        try:
            path = checkpoint()
        except Exception as exc:  # the run cannot be saved: say so, and still end it (memory is critical)
            cause = f"urgent checkpoint-and-stop failed to write a checkpoint: {type(exc).__name__}: {exc}"[:500]
            log.error("%s", cause)
            self.log("failed", cause)
            self._pending_stop.append(request_id)
            self.finish(RunState.FAILED, exit_cause=cause)
            code = 1
        else:
            self._pending_stop.append(request_id)
            self.log("stopped", f"stopped urgently at step {self.status.step}", checkpoint=str(path) if path else None)
            self.finish(RunState.STOPPED, checkpoint=path,
                        exit_cause="checkpoint-and-stop (urgent: the step in flight was abandoned)")
            code = 0
        print(f"crashguard: urgent stop, checkpoint {self.status.checkpoint}", file=sys.stderr)
        if mode == "interrupt":
            interrupt_main_thread()
        else:
            end_process_now(code)

    def stop_on_signals(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
        """Turn SIGTERM/SIGINT into a checkpoint-and-stop at the next step boundary (main thread only)."""

        def handler(signum: int, _frame: FrameType | None) -> None:
            if self._signal_stop and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C: the user does not want to wait
            self._signal_stop = True
            print(f"crashguard: {signal.Signals(signum).name} received, checkpointing at the next step",
                  file=sys.stderr)

        for signum in signals:
            signal.signal(signum, handler)

    @property
    def stop_requested(self) -> bool:
        return self._signal_stop or bool(self._pending_stop)

    # -- during the run ----------------------------------------------------------------------------
    def update(self, **fields: Any) -> None:
        """Set status fields (step, epoch, loss, micro_batch, ...); written at most once per interval."""
        for key, value in fields.items():
            setattr(self.status, key, coerce_field(key, value))
        if "step" in fields:
            self._time_step(fields["step"])
        self._track_peak()
        if time.monotonic() - self._last_write >= self._write_interval:
            self._write()

    def event(self, message: str, **fields: Any) -> None:
        """Record a notable event (OOM back-off, checkpoint) and write it out now."""
        log.info("%s", message)
        self.status.last_event = coerce_field("last_event", message)
        for key, value in fields.items():
            setattr(self.status, key, coerce_field(key, value))
        self._write()

    def log(self, kind: str, message: str, step: int | None = None, **fields: Any) -> None:
        """Append an event to the run's history, events.jsonl (rank 0; runs/event_log.py). `step`: the optimizer
        steps completed when it happened (default: the status's step)."""
        if self.events is not None:
            self.events.append(kind, message, self.status.step if step is None else step, **fields)

    def step_boundary(self, **fields: Any) -> None:
        """Call between optimizer steps: updates the status and handles waiting control requests."""
        self.update(**fields)
        self.poll_control()

    def poll_control(self) -> None:
        control_fd = self._control_fd
        if control_fd is None:
            return  # not started (or finished): no requests
        for name in _request_names(control_fd):
            try:
                request = read_checked_json(name, control_fd, cap=MAX_REQUEST_BYTES)
            except (OSError, RefusedFile):
                request = None
            unlink_at(control_fd, name)
            request_id = name[:-len(".json")]
            # The id names the answer file: it must be the request file's own plain name, never a path.
            if not isinstance(request, dict) or request.get("id") != request_id or not REQUEST_ID.fullmatch(request_id):
                log.warning("ignored control file %s: not a valid request", name[:80])
                continue
            self._handle(request_id, request.get("action"))

    # -- internals ---------------------------------------------------------------------------------
    def _handle(self, request_id: str, action: Any) -> None:
        if action == ControlAction.CLEANUP.value:
            report = self._cleanup()
            message = f"cleanup on request: freed {report.rss_freed / 2**20:.0f} MiB RSS"
            self.event(message)
            self.log("cleanup", message, rss_freed=report.rss_freed)
            self._answer(request_id, ControlAction.CLEANUP, ok=True, report=report.to_dict())
        elif action == ControlAction.CHECKPOINT_AND_STOP.value:
            self._pending_stop.append(request_id)
            self.event("checkpoint-and-stop requested", state=RunState.STOPPING.value)
            self.log("stop_requested", "checkpoint-and-stop requested")
        else:
            self._answer(request_id, None, ok=False, error=f"unknown action {action!r}")

    def _answer(self, request_id: str, action: ControlAction | None, ok: bool,
                report: dict[str, Any] | None = None, error: str | None = None) -> None:
        if not REQUEST_ID.fullmatch(request_id):  # every caller checked it; an answer file is never a path
            log.warning("not answering request %r: not a valid request id", request_id[:80])
            return
        write_json_at(self._hold_control_dir(), f"{request_id}.done.json", {
            "id": request_id, "action": action.value if action else None, "ok": ok, "report": report,
            "error": error, "time": time.time(),
        })

    def _time_step(self, step: Any) -> None:
        """Keep status.step_seconds, an average of recent step times: the sidecar calls a run hung only when its
        status is many typical steps old, so a run with 15 s steps is not hung after 20 s."""
        now = time.monotonic()
        mark = self._step_mark
        if mark is not None and step == mark[0]:
            return
        if mark is not None and isinstance(step, int) and isinstance(mark[0], int) and step > mark[0]:
            seconds = (now - mark[1]) / (step - mark[0])
            ema = self.status.step_seconds
            self.status.step_seconds = seconds if ema is None else ema + STEP_EMA_WEIGHT * (seconds - ema)
        self._step_mark = (step, now)

    def _track_peak(self) -> None:
        rss = self._process.memory_info().rss
        self.status.peak_rss = max(self.status.peak_rss, rss)

    def _hold_run_dir(self) -> int:
        """The run folder, created private if needed, opened without following a symlink and held."""
        if self._run_fd is None:
            self._run_fd = _open_private_dir(self.run_dir)
        return self._run_fd

    def _hold_control_dir(self) -> int:
        if self._control_fd is None:
            self._control_fd = ensure_checked_dir(control_name(self.status.rank), self._hold_run_dir(),
                                                  what=str(self._control_dir))
        return self._control_fd

    def _release_dirs(self) -> None:
        for fd in (self._control_fd, self._run_fd):
            if fd is not None:
                os.close(fd)
        self._control_fd = self._run_fd = None

    def _acquire_lock(self) -> None:
        held = lock.acquire(self._lock_file, dir_fd=self._hold_run_dir())
        self.status.lock_dev, self.status.lock_ino, self.status.lock_fd = held.dev, held.ino, held.fd
        self._locked = True
        # Registration is also when the run volunteers to the OOM killer: before its loop starts workers.
        self.status.oom_score_adj = volunteer(self._oom_score_adj)

    def _write(self, final: bool = False) -> None:
        with self._write_lock:
            if self._ended:  # a terminal state is written: later writes (another thread's) must not undo it
                return
            if not self._locked and not RunState(self.status.state).terminal:
                self._acquire_lock()  # update() before start(): still never a live status without the lock
            self._ended = final
            self.status.updated = time.time()
            write_json_at(self._hold_run_dir(), status_name(self.status.rank), self.status.to_dict())
            self._last_write = time.monotonic()


def _request_names(control_fd: int) -> list[str]:
    """The request files waiting in the control folder open as `control_fd`, oldest id first."""
    try:
        names = os.listdir(control_fd)
    except OSError:
        return []
    return sorted(n for n in names if n.endswith(".json") and not n.endswith(".done.json"))


def _nudge(runs_dir: Path) -> None:
    """Touch the runs folder: a monitor that skips folders that did not change looks again at once (a resume
    rewrites an existing run folder, which does not change the runs folder itself)."""
    with contextlib.suppress(OSError):
        os.utime(runs_dir)


def _open_private_dir(path: Path) -> int:
    """Create `path` if needed, open it without following a symlink and make sure it is a real folder of this user
    that only this user can write (the sidecar refuses anything else, and a symlink planted in a cloned repository
    must not redirect our writes); the descriptor is the caller's."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise RefusedFile(f"{path} is not a folder (a symlink?): refusing to register a run there ({exc})") from None
    try:
        st = os.fstat(fd)
        if st.st_uid == os.geteuid() and st.st_mode & 0o022:
            os.fchmod(fd, st.st_mode & 0o7755)  # a umask of 002 makes folders group-writable
            st = os.fstat(fd)
        check_private(st, str(path))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _private_dir(path: Path) -> None:
    """`_open_private_dir`, for a caller that needs the folder but not a descriptor."""
    os.close(_open_private_dir(path))
