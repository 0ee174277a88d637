"""The urgent stop: a light thread that notices an urgent checkpoint-and-stop within a fraction of a second,
whatever the run's main thread is doing (a long step, a stuck DataLoader).

An urgent request (`"urgent": true`, sent by the sidecar's ladder when a resource is critical) does not wait for
the step in flight: the watcher claims it, calls the run's checkpoint function (which takes the step's lock and
writes the last completed step), marks the run stopped, answers, and ends the run at once: the process exits
(its memory is free the moment it does; DataLoader workers notice their parent is gone and exit), or, in an
interactive session (a notebook kernel), the main thread gets `UrgentStop` raised at its next bytecode so the
kernel survives. Plain Python, no torch: the checkpoint function is the training side's.

The watcher reads the control folder through a descriptor of its own (the hook's, duplicated), never by path: a
`control/` swapped for a symlink cannot make it read, rename or delete anything elsewhere. A request's id must be
its file's own name and a valid REQUEST_ID, since it names the answer file.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
import threading
from collections.abc import Callable

from .files import RefusedFile, read_checked_json
from .status import REQUEST_ID, ControlAction

log = logging.getLogger(__name__)
POLL_SECONDS = 0.2
MAX_BYTES = 4096  # a request is ~120 bytes
CLAIMED_SUFFIX = ".urgent"


class UrgentStop(BaseException):
    """Raised in the main thread of an interactive session after an urgent stop wrote its checkpoint (a
    BaseException, like KeyboardInterrupt, so `except Exception` in a training loop does not swallow it)."""


def interactive() -> bool:
    """A notebook or IPython kernel: ending the process would lose the user's session."""
    return "ipykernel" in sys.modules or hasattr(sys, "ps1")


def is_urgent_stop(request: object) -> bool:
    return (isinstance(request, dict) and request.get("action") == ControlAction.CHECKPOINT_AND_STOP.value
            and request.get("urgent") is True and isinstance(request.get("id"), str))


class UrgentWatcher:
    """Polls a run's control folder on its own daemon thread; `on_urgent(request_id)` runs on that thread.
    `control_fd` is the folder, open: the watcher owns it and closes it when its thread ends."""

    def __init__(self, control_fd: int, on_urgent: Callable[[str], None], interval: float = POLL_SECONDS) -> None:
        self.control_fd = control_fd
        self.on_urgent = on_urgent
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="crashguard-urgent-stop", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                request_id = self._claim()
                if request_id is not None:
                    self.on_urgent(request_id)
                    return
        finally:
            with contextlib.suppress(OSError):
                os.close(self.control_fd)

    def _claim(self) -> str | None:
        """The id of an urgent stop request, claimed by renaming it (the main thread's poll then never sees it)."""
        fd = self.control_fd
        try:
            names = sorted(n for n in os.listdir(fd) if n.endswith(".json") and not n.endswith(".done.json"))
        except OSError:
            return None
        for name in names:
            request_id = name[:-len(".json")]
            if not REQUEST_ID.fullmatch(request_id):
                continue  # not a request's name (an id names the answer file: never a path)
            try:  # plain small files of this user only: a symlink (to /dev/zero, elsewhere) or a huge file is refused
                request = read_checked_json(name, fd, cap=MAX_BYTES)
            except (OSError, RefusedFile):
                continue
            if not is_urgent_stop(request) or request["id"] != request_id:
                continue
            claimed = request_id + CLAIMED_SUFFIX
            try:
                os.rename(name, claimed, src_dir_fd=fd, dst_dir_fd=fd)
            except OSError:
                continue  # the main thread took it first: it stops at this step boundary instead
            with contextlib.suppress(OSError):
                os.unlink(claimed, dir_fd=fd)
            return request_id
        return None


def interrupt_main_thread() -> None:
    """Raise UrgentStop in the main thread at its next bytecode (it unwinds the step and frees its tensors)."""
    main = threading.main_thread().ident
    if main is None or main == threading.get_ident():
        raise UrgentStop
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(main), ctypes.py_object(UrgentStop))


def end_process_now(code: int = 0) -> None:
    """Leave at once from the watcher thread: no atexit handlers, no waiting for the main thread's step."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
