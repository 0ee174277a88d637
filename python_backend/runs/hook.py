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
"""

from __future__ import annotations

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
from .files import read_json, write_json_atomic
from .status import ControlAction, RunState, RunStatus, control_dir, status_path
from .urgent import UrgentWatcher, end_process_now, interactive, interrupt_main_thread

log = logging.getLogger(__name__)


class RunHook:
    def __init__(self, name: str, runs_dir: str | Path = "runs", config: str | Path | None = None,
                 rank: int = 0, world_size: int = 1, write_interval: float = 1.0,
                 cleanup: Callable[[], CleanupReport] = emergency_cleanup) -> None:
        self.run_dir = Path(runs_dir).resolve() / name
        self._status_file = status_path(self.run_dir, rank)
        self._control_dir = control_dir(self.run_dir, rank)
        self._write_interval = write_interval
        self._cleanup = cleanup
        self._last_write = 0.0
        self._pending_stop: list[str] = []  # ids of checkpoint_and_stop requests to answer in finish()
        self._signal_stop = False
        self._ended = False  # a terminal state is written: later writes (another thread's) must not undo it
        self._write_lock = threading.RLock()
        self._urgent: UrgentWatcher | None = None
        self._process = psutil.Process(os.getpid())
        self.status = RunStatus(
            name=name, pid=os.getpid(), create_time=self._process.create_time(), rank=rank,
            world_size=world_size, config=str(Path(config).resolve()) if config else None,
        )

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._control_dir.mkdir(parents=True, exist_ok=True)
        for stale in self._control_dir.glob("*.json"):  # requests addressed to an earlier process
            stale.unlink(missing_ok=True)
        now = time.time()
        self.status.started = now
        self.status.state = RunState.RUNNING.value
        self._write()

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

    def watch_urgent(self, checkpoint: Callable[[], str | Path | None],
                     end: Literal["auto", "exit", "interrupt"] = "auto") -> None:
        """Honour urgent checkpoint-and-stop requests at once (call after start()). `checkpoint` runs on the
        watcher thread: it must take the training step's lock and write the last completed step, returning the
        path. Then the run is marked stopped, the request answered, and the run ended: `exit` ends the process,
        `interrupt` raises UrgentStop in the main thread (`auto`: interrupt in a notebook kernel, else exit)."""
        mode = ("interrupt" if interactive() else "exit") if end == "auto" else end

        def on_urgent(request_id: str) -> None:
            self._urgent_stop(request_id, checkpoint, mode)

        self._urgent = UrgentWatcher(self._control_dir, on_urgent)
        self._urgent.start()

    def _urgent_stop(self, request_id: str, checkpoint: Callable[[], str | Path | None], mode: str) -> None:
        if self._ended:  # the run ended as the request came in: nothing to stop, and the process is not ours to end
            self._answer(request_id, ControlAction.CHECKPOINT_AND_STOP, ok=False, error="the run has ended",
                         report={"checkpoint": self.status.checkpoint, "state": self.status.state})
            return
        self.event("urgent checkpoint-and-stop: abandoning the step in flight", state=RunState.STOPPING.value)
        try:
            path = checkpoint()
        except Exception as exc:  # the run cannot be saved: say so, and still end it (memory is critical)
            cause = f"urgent checkpoint-and-stop failed to write a checkpoint: {type(exc).__name__}: {exc}"[:500]
            log.error("%s", cause)
            self._pending_stop.append(request_id)
            self.finish(RunState.FAILED, exit_cause=cause)
            code = 1
        else:
            self._pending_stop.append(request_id)
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
            if not hasattr(self.status, key):
                raise AttributeError(f"RunStatus has no field {key!r}")
            setattr(self.status, key, value)
        self._track_peak()
        if time.monotonic() - self._last_write >= self._write_interval:
            self._write()

    def event(self, message: str, **fields: Any) -> None:
        """Record a notable event (OOM back-off, checkpoint) and write it out now."""
        log.info("%s", message)
        self.status.last_event = message
        for key, value in fields.items():
            setattr(self.status, key, value)
        self._write()

    def step_boundary(self, **fields: Any) -> None:
        """Call between optimizer steps: updates the status and handles waiting control requests."""
        self.update(**fields)
        self.poll_control()

    def poll_control(self) -> None:
        try:
            entries = sorted(p for p in self._control_dir.iterdir()
                             if p.suffix == ".json" and not p.name.endswith(".done.json"))
        except FileNotFoundError:
            return
        for path in entries:
            request = read_json(path)
            path.unlink(missing_ok=True)
            if not isinstance(request, dict) or "id" not in request:
                continue
            self._handle(str(request["id"]), request.get("action"))

    # -- internals ---------------------------------------------------------------------------------
    def _handle(self, request_id: str, action: Any) -> None:
        if action == ControlAction.CLEANUP.value:
            report = self._cleanup()
            self.event(f"cleanup on request: freed {report.rss_freed / 2**20:.0f} MiB RSS")
            self._answer(request_id, ControlAction.CLEANUP, ok=True, report=report.to_dict())
        elif action == ControlAction.CHECKPOINT_AND_STOP.value:
            self._pending_stop.append(request_id)
            self.event("checkpoint-and-stop requested", state=RunState.STOPPING.value)
        else:
            self._answer(request_id, None, ok=False, error=f"unknown action {action!r}")

    def _answer(self, request_id: str, action: ControlAction | None, ok: bool,
                report: dict[str, Any] | None = None, error: str | None = None) -> None:
        write_json_atomic(self._control_dir / f"{request_id}.done.json", {
            "id": request_id, "action": action.value if action else None, "ok": ok, "report": report,
            "error": error, "time": time.time(),
        })

    def _track_peak(self) -> None:
        rss = self._process.memory_info().rss
        self.status.peak_rss = max(self.status.peak_rss, rss)

    def _write(self, final: bool = False) -> None:
        with self._write_lock:
            if self._ended:
                return
            self._ended = final
            self.status.updated = time.time()
            write_json_atomic(self._status_file, self.status.to_dict())
            self._last_write = time.monotonic()
