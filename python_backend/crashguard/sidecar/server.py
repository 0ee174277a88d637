"""pygls wiring only: JSON-RPC methods of ONE connection (one window) -> the hub's one core, and logs to
window/logMessage.

`CrashGuardServer` is one connection: over stdio (`crashguard serve`, the only connection of a hub that is not
shared) or one of the shared monitor's socket connections (daemon.py). Whatever the number of connections, the
hub (hub.py) holds the one core, the one sampling thread and the request pools: samples are taken on a thread of
their own that nothing else can occupy; requests run on two bounded pools, one for quick requests (status, runs,
history, processDetail) and one for requests that wait on runs answering at their next step boundary (cleanup,
stopRun), so a pile of slow cleanups cannot delay the report either. A pool that is full refuses a request at once
with SERVER_BUSY. Every one of these threads is a daemon: shutdown and exit never wait for a request in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import sys
from collections.abc import Callable, Generator
from typing import Any, TypeVar

import cattrs
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.protocol import (
    JsonRPCNotification,
    JsonRPCRequestMessage,
    JsonRPCResponseMessage,
    LanguageServerProtocol,
    default_converter,
)
from pygls.protocol.language_server import lsp_method

from ..guard.cleanup import emergency_cleanup
from ..util.version import __version__
from . import protocol as p
from .core import Sidecar
from .handshake import announcement, check_client_version
from .hub import QUICK_QUEUE, QUICK_WORKERS, RUN_REQUEST_QUEUE, RUN_REQUEST_WORKERS, Hub, runs_in
from .settings import SettingsError, settings_from_configuration, settings_from_initialization
from .workers import PoolBusy, WorkerPool

__all__ = ["QUICK_QUEUE", "QUICK_WORKERS", "RUN_REQUEST_QUEUE", "RUN_REQUEST_WORKERS", "CrashGuardServer",
           "build_server", "plain_json_converter"]

log = logging.getLogger(__name__)
T = TypeVar("T")
SERVER_NOT_INITIALIZED = -32002
_keys = itertools.count(1)


def plain_json_converter() -> cattrs.Converter:
    """pygls' converter, except that params and results of methods outside LSP stay plain JSON (dicts and lists)
    instead of becoming namedtuples, which would mangle keys that are not identifiers. Used by the test client and
    the benchmark too."""
    converter: cattrs.Converter = default_converter()  # type: ignore[no-untyped-call]  # pygls leaves it unannotated
    for cls in (JsonRPCRequestMessage, JsonRPCNotification, JsonRPCResponseMessage):
        converter.register_structure_hook(cls, lambda obj, cls: cls(**obj))
    return converter


class ConnectionProtocol(LanguageServerProtocol):
    """pygls' protocol, with the monitor's protocol version in the initialize result's capabilities (handshake.py),
    and an `exit` that, on a connection of the shared monitor, ends that connection only (pygls would end the
    process, and with it every other window's monitor)."""

    @lsp_method(lsp.INITIALIZE)
    def lsp_initialize(self, params: lsp.InitializeParams) -> Generator[Any, Any, lsp.InitializeResult]:
        result: lsp.InitializeResult = yield from super().lsp_initialize(params)
        result.capabilities.experimental = announcement()
        return result

    @lsp_method(lsp.EXIT)
    def lsp_exit(self, *args: Any) -> Generator[Any, Any, None]:
        server = self._server
        if isinstance(server, CrashGuardServer) and server.hub.shared:
            server.disconnect()
            return
        yield from super().lsp_exit(*args)


class CrashGuardServer(LanguageServer):
    def __init__(self, hub: Hub | None = None) -> None:
        super().__init__("crash-guard", __version__, text_document_sync_kind=lsp.TextDocumentSyncKind.None_,
                         converter_factory=plain_json_converter, protocol_cls=ConnectionProtocol)
        self.hub = hub if hub is not None else Hub(shared=False)
        self.key = next(_keys)
        self.initialized = False
        self.wants_stop = False  # crashGuard/stopMonitor: the monitor may exit at once once nobody else is left
        self.wants_replace = False  # ... {replace: true}: it exits when this window leaves, whoever else is there
        self._closed = False  # after shutdown or disconnect nothing more is sent: the client may be gone
        self.on_disconnect: Callable[[], None] | None = None  # the socket connection's own close (daemon.py)

    # -- plumbing --------------------------------------------------------------------------------------
    @property
    def sidecar(self) -> Sidecar | None:
        return self.hub.sidecar

    def core(self) -> Sidecar:
        if not self.initialized or self.hub.sidecar is None:
            raise JsonRpcException("server not initialized", code=SERVER_NOT_INITIALIZED)
        return self.hub.sidecar

    def send(self, method: str, params: Any) -> None:
        """A notification to this connection's client (on the event loop; the hub routes). A client that is gone
        is dropped quietly: logging it would send a log message, which would fail again."""
        if self._closed:
            return
        try:
            self.protocol.notify(method, params)
        except Exception:
            self.disconnect()

    def send_frame(self, frame: bytes) -> None:
        """An already framed notification (the hub encodes a sample once for every window)."""
        writer = self.protocol.writer
        if self._closed or writer is None:
            return
        try:
            writer.write(frame)
        except Exception:
            self.disconnect()

    def emit(self, method: str, params: Any) -> None:
        """A notification from any thread, to the windows it is for (the hub routes it)."""
        self.hub.emit(method, params)

    async def off_loop(self, fn: Callable[..., T], *args: Any, pool: WorkerPool | None = None) -> T:
        """Run a blocking call on a request pool (the quick one unless told); a full pool answers SERVER_BUSY."""
        try:
            future = (pool or self.hub.quick).submit(fn, *args)
        except PoolBusy as exc:
            raise JsonRpcException(f"Server busy: {exc}", code=p.SERVER_BUSY,
                                   data={"inFlight": exc.in_flight, "limit": exc.limit}) from None
        except RuntimeError:  # closed: the client already asked for shutdown
            raise JsonRpcException("Server shutting down", code=p.SERVER_BUSY) from None
        return await asyncio.wrap_future(future)

    def leave(self) -> None:
        """This connection is done (shutdown, exit or a closed socket): nothing more is sent to it, its runs
        directories leave the union; over stdio the hub (and sampling) ends with it."""
        self._closed = True
        self.hub.leave(self)

    def disconnect(self) -> None:
        """Leave and close the connection (the shared monitor's `exit`, or a client that cannot be written to)."""
        self.leave()
        if self.on_disconnect is not None:
            with contextlib.suppress(Exception):
                self.on_disconnect()


class ClientLogHandler(logging.Handler):
    """Forwards the monitor's own log records (not pygls') to every window's window/logMessage."""

    _TYPES = ((logging.ERROR, lsp.MessageType.Error), (logging.WARNING, lsp.MessageType.Warning),
              (logging.INFO, lsp.MessageType.Info))

    def __init__(self, hub: Hub, level: int = logging.INFO) -> None:
        super().__init__(level)
        self._hub = hub

    def emit(self, record: logging.LogRecord) -> None:
        kind = next((t for lvl, t in self._TYPES if record.levelno >= lvl), lsp.MessageType.Log)
        try:
            message = self.format(record)
        except Exception:
            return
        self._hub.emit(lsp.WINDOW_LOG_MESSAGE, lsp.LogMessageParams(type=kind, message=message))


def _invalid(exc: p.ParamsError | SettingsError) -> JsonRpcInvalidParams:
    return JsonRpcInvalidParams(f"Invalid params: {exc}", data={"field": exc.field})


def _parsed(parse: Callable[[Any], T], params: Any) -> T:
    """Params through their parser; a bad one becomes InvalidParams naming the field."""
    try:
        return parse(params)
    except (p.ParamsError, SettingsError) as exc:
        raise _invalid(exc) from None


def build_server(hub: Hub | None = None) -> CrashGuardServer:
    """One connection's server: of `hub` (the shared monitor's), or of a hub of its own (stdio)."""
    server = CrashGuardServer(hub)

    @server.feature(lsp.INITIALIZE)
    def initialize(ls: CrashGuardServer, params: lsp.InitializeParams) -> None:
        check_client_version(params.initialization_options)
        settings = _parsed(settings_from_initialization, params.initialization_options)
        ls.hub.bind_loop()
        if ls.initialized:  # initialize again: new settings for the same connection
            ls.hub.update(ls, settings)
            return
        ls.hub.join(ls, settings)
        ls.initialized = True

    @server.feature(lsp.INITIALIZED)
    def initialized(ls: CrashGuardServer, params: lsp.InitializedParams) -> None:
        if not ls.hub.shared:
            # Start lean: give back what imports and initialize's one-off structuring left on the heap.
            emergency_cleanup()
        ls.hub.ready(ls)
        runs = ", ".join(str(d) for d in sorted(ls.hub.runs_dirs_of(ls))) or "no runs directory"
        where = f"shared by {ls.hub.connections} window(s)" if ls.hub.shared else "over stdio"
        log.info("Crash Guard memory monitor %s on Python %s, %s (this window's runs in %s)", __version__,
                 sys.version.split()[0], where, runs)

    @server.feature(lsp.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(ls: CrashGuardServer, params: lsp.DidChangeConfigurationParams) -> None:
        current = ls.hub.settings_for(ls) if ls.initialized else None
        if current is None:
            return
        try:
            settings = settings_from_configuration(current, params.settings)
        except SettingsError as exc:  # a notification has no reply: tell the user, keep the old settings
            log.warning("settings rejected, previous settings kept: %s", exc)
            ls.window_show_message(lsp.ShowMessageParams(type=lsp.MessageType.Error,
                                                         message=f"Crash Guard: setting rejected: {exc}"))
            return
        ls.hub.update(ls, settings)

    @server.feature(p.UPDATE_SETTINGS)
    async def update_settings(ls: CrashGuardServer, params: Any) -> dict[str, Any]:
        ls.core()
        current = ls.hub.settings_for(ls)
        assert current is not None  # initialized
        settings = _parsed(lambda raw: current.updated(p.parse_update_settings(raw)), params)
        ls.hub.update(ls, settings)
        return {"settings": settings.to_wire()}

    @server.feature(p.WINDOW_STATE)
    def window_state(ls: CrashGuardServer, params: Any) -> None:
        try:
            focused = p.parse_window_state(params)
        except p.ParamsError as exc:  # a notification: log it, change nothing
            log.warning("%s ignored: %s", p.WINDOW_STATE, exc)
            return
        ls.hub.focus(ls, focused)

    @server.feature(p.STOP_MONITOR)
    def stop_monitor(ls: CrashGuardServer, params: Any) -> None:
        try:
            ls.wants_replace = p.parse_stop_monitor(params)
        except p.ParamsError as exc:  # a notification: log it, change nothing
            log.warning("%s ignored: %s", p.STOP_MONITOR, exc)
            return
        ls.wants_stop = True

    @server.feature(p.STATUS)
    async def status(ls: CrashGuardServer, params: Any) -> Any:
        _parsed(p.parse_empty, params)
        return p.to_wire(await ls.off_loop(ls.core().status))

    @server.feature(p.RUNS)
    async def runs(ls: CrashGuardServer, params: Any) -> Any:
        _parsed(p.parse_empty, params)
        core, dirs = ls.core(), ls.hub.runs_dirs_of(ls)  # this window's folders only (read on the event loop)
        return p.to_wire(await ls.off_loop(lambda: runs_in(core.runs(), dirs)))

    @server.feature(p.CLEANUP)
    async def cleanup(ls: CrashGuardServer, params: Any) -> Any:
        args = _parsed(p.CleanupParams.parse, params)
        return p.to_wire(await ls.off_loop(ls.core().cleanup, args.runs, args.timeout, pool=ls.hub.run_requests))

    @server.feature(p.STOP_RUN)
    async def stop_run(ls: CrashGuardServer, params: Any) -> Any:
        args = _parsed(p.StopRunParams.parse, params)
        return p.to_wire(await ls.off_loop(ls.core().stop, args.run, args.timeout, args.dir,
                                           pool=ls.hub.run_requests))

    @server.feature(p.END_LOCK_HOLDER)
    async def end_lock_holder(ls: CrashGuardServer, params: Any) -> Any:
        args = _parsed(p.EndLockHolderParams.parse, params)
        return p.to_wire(await ls.off_loop(ls.core().end_lock_holder, args.dir, args.pid, args.rank, args.force,
                                           pool=ls.hub.run_requests))

    @server.feature(p.PROCESS_DETAIL)
    async def process_detail(ls: CrashGuardServer, params: Any) -> Any:
        pid = _parsed(p.parse_process_detail, params)
        detail = await ls.off_loop(ls.core().process_detail, pid)
        if detail is None:
            raise JsonRpcInvalidParams(f"Invalid params: pid: no process {pid} (or not readable)",
                                       data={"field": "pid"})
        return p.to_wire(detail)

    @server.feature(p.HISTORY)
    async def history(ls: CrashGuardServer, params: Any) -> Any:
        seconds = _parsed(p.parse_history, params)
        core = ls.core()
        return await ls.off_loop(lambda: p.to_wire(core.history(seconds)))

    @server.feature(lsp.SHUTDOWN)
    def shutdown(ls: CrashGuardServer, params: Any) -> None:
        ls.leave()

    return server
