"""The monitor's one core for every connected window: ONE Sidecar (sampler, levels, registry, escalation ladder),
ONE sampling thread and one pair of request pools, whatever the number of connections.

Each connection (one VS Code window) registers its own settings; the hub combines them:
- runs directories: the union of every connection's `runsDirectories` (a connection names its own; over the
  shared socket `runsDirectory`, relative to the monitor's cwd, means nothing and names none);
- everything else (thresholds, the critical action, autoCleanup, the sample interval, ...) is one value per host:
  the settings most recently sent by any window (initialize, didChangeConfiguration or updateSettings). They are
  `machine`-scoped settings, so every window of a host reads the same values and the choice rarely matters.

Notifications go where `routing.Router` says. `crashguard serve` (stdio) is a hub that is not shared: one
connection, its settings as they are, and the hub closes when that connection shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from . import protocol as p
from .core import Sidecar
from .routing import Router
from .settings import Settings
from .workers import Ticker, WorkerPool

# Quick requests take milliseconds; run requests wait up to their timeout for runs to answer between steps.
QUICK_WORKERS, QUICK_QUEUE = 2, 32
RUN_REQUEST_WORKERS, RUN_REQUEST_QUEUE = 4, 16


class Listener(Protocol):
    """A connection as the hub sees it: a key and ways to send it a notification (on the event loop)."""

    key: int

    def send(self, method: str, params: Any) -> None: ...

    def send_frame(self, frame: bytes) -> None: ...


def frame(method: str, params: Any) -> bytes:
    """A notification with plain JSON params, framed as pygls frames it (Content-Length of the ASCII body). Encoded
    once for every window it goes to: pygls would restructure and encode the whole sample once per connection."""
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params})
    return (f"Content-Length: {len(body)}\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n"
            f"{body}").encode("ascii")


@dataclass
class _Member:
    listener: Listener
    settings: Settings


class Hub:
    def __init__(self, shared: bool, sidecar_factory: Callable[[Settings, Callable[[str, Any], None]], Sidecar]
                 = Sidecar) -> None:
        self.shared = shared
        self.sidecar: Sidecar | None = None
        self._make_sidecar = sidecar_factory
        self.quick = WorkerPool("quick requests", QUICK_WORKERS, QUICK_QUEUE)
        self.run_requests = WorkerPool("run requests", RUN_REQUEST_WORKERS, RUN_REQUEST_QUEUE)
        self._ticker: Ticker | None = None
        self._router = Router()
        self._members: dict[int, _Member] = {}
        self._latest: Settings | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    # -- the event loop every connection lives on --------------------------------------------------------
    def bind_loop(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()

    def emit(self, method: str, params: Any) -> None:
        """Send a notification to the windows it is for, from any thread (delivered on the event loop, never
        synchronously: a connection that fails while sending cannot re-enter here)."""
        loop = self._loop
        if self.closed or loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (exit): nobody to send to
            loop.call_soon_threadsafe(self._deliver, method, params)

    def _deliver(self, method: str, params: Any) -> None:
        for keys, sent in self._router.deliveries(method, params):
            listeners = [m.listener for m in map(self._members.get, keys) if m]
            if not listeners:
                continue
            if not isinstance(sent, dict):  # an LSP type (window/logMessage): pygls serializes it
                for listener in listeners:
                    listener.send(method, sent)
                continue
            framed = frame(method, sent)
            for listener in listeners:
                listener.send_frame(framed)

    # -- membership (event loop only) ----------------------------------------------------------------------
    @property
    def connections(self) -> int:
        return len(self._members)

    def _dirs_of(self, settings: Settings) -> list[Path]:
        if self.shared and settings.runs_directories is None:
            return []
        return settings.runs_paths()

    def effective(self) -> Settings:
        """The settings the one core runs with."""
        latest = self._latest or Settings()
        if not self.shared:
            return latest
        return dataclasses.replace(latest, runs_directories=tuple(str(d) for d in self._router.runs_dirs()))

    def join(self, listener: Listener, settings: Settings) -> None:
        """A connection initialized with `settings` (the first one creates the core)."""
        self._members[listener.key] = _Member(listener, settings)
        self._router.register(listener.key, self._dirs_of(settings))
        self._latest = settings
        self._apply()

    def ready(self, listener: Listener) -> None:
        """The connection sent `initialized`: from now on it gets notifications; sampling runs."""
        if listener.key not in self._members:
            return
        self._router.listen(listener.key)
        self.start_sampling()

    def update(self, listener: Listener, settings: Settings) -> None:
        member = self._members.get(listener.key)
        if member is None:
            return
        member.settings = settings
        self._router.register(listener.key, self._dirs_of(settings))
        self._latest = settings
        self._apply()

    def leave(self, listener: Listener) -> None:
        """The connection shut down or went away: its runs directories leave the union. Not shared: the end."""
        if self._members.pop(listener.key, None) is None:
            return
        self._router.leave(listener.key)
        if not self.shared:
            self.close()
        elif self.sidecar is not None:
            self._apply()

    def settings_for(self, listener: Listener) -> Settings | None:
        """What a partial update of this connection applies to: the host-wide values in force, with this
        connection's own runs directories."""
        member = self._members.get(listener.key)
        if member is None:
            return None
        if not self.shared:
            return member.settings
        return dataclasses.replace(self.effective(), runs_directories=member.settings.runs_directories,
                                   runs_directory=member.settings.runs_directory)

    def focus(self, listener: Listener, focused: bool) -> None:
        self._router.focus(listener.key, focused, time.monotonic())

    def runs_dirs_of(self, listener: Listener) -> frozenset[Path]:
        window = self._router.windows.get(listener.key)
        return window.runs_dirs if window is not None else frozenset()

    def alert_window(self) -> int | None:
        return self._router.alert_window()

    def _apply(self) -> None:
        settings = self.effective()
        if self.sidecar is None:
            self.sidecar = self._make_sidecar(settings, self.emit)
            return
        if settings != self.sidecar.settings:
            self.sidecar.apply_settings(settings)
            self.reschedule()

    # -- sampling ----------------------------------------------------------------------------------------
    def core(self) -> Sidecar:
        if self.sidecar is None:
            raise RuntimeError("no window has initialized the monitor yet")
        return self.sidecar

    def start_sampling(self) -> None:
        """The host's one sampling loop, at the delay the core asks for (sidecar/schedule.py: sooner as RAM nears
        its limit)."""
        if self._ticker is None and not self.closed:
            self._ticker = Ticker(lambda: self.core().tick(), lambda: self.core().next_delay())
            self._ticker.start()

    def reschedule(self) -> None:
        """New settings: take the next sample now, at the new interval."""
        if self._ticker is not None:
            self._ticker.wake()

    def close(self) -> None:
        """Stop sampling and refuse new requests; nothing in flight is waited for."""
        if self.closed:
            return
        self.closed = True
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None
        self.quick.close()
        self.run_requests.close()
        if self.sidecar is not None:
            self.sidecar.close()


def runs_in(result: p.RunsResult, dirs: frozenset[Path]) -> p.RunsResult:
    """Only the runs whose folder lies in one of `dirs` (a window is told about the runs of its own folders). The
    count of runs the monitor left out of the list stays (C2: "and N more"); with several windows it counts the
    other windows' too (an upper bound for this one's)."""
    return p.RunsResult([run for run in result.runs if Path(run.dir).parent in dirs], result.runs_omitted)
