"""pygls wiring only: JSON-RPC methods -> the Sidecar core, the sampling thread, and logs to window/logMessage.

Samples are taken on a thread of their own that nothing else can occupy. Requests run on two bounded pools: one
for quick requests (status, runs, history, processDetail) and one for requests that wait on runs answering at
their next step boundary (cleanup, stopRun), so a pile of slow cleanups cannot delay the report either. A pool
that is full refuses a request at once with SERVER_BUSY. Every one of these threads is a daemon: shutdown and
exit never wait for a request in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import cattrs
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.protocol import JsonRPCNotification, JsonRPCRequestMessage, JsonRPCResponseMessage, default_converter

from ..guard.cleanup import emergency_cleanup
from ..util.version import __version__
from . import protocol as p
from .core import Sidecar
from .handshake import HandshakeProtocol, check_client_version
from .settings import SettingsError, settings_from_configuration, settings_from_initialization
from .workers import PoolBusy, Ticker, WorkerPool

log = logging.getLogger(__name__)
T = TypeVar("T")
SERVER_NOT_INITIALIZED = -32002
# Quick requests take milliseconds; run requests wait up to their timeout for runs to answer between steps.
QUICK_WORKERS, QUICK_QUEUE = 2, 32
RUN_REQUEST_WORKERS, RUN_REQUEST_QUEUE = 4, 16


def plain_json_converter() -> cattrs.Converter:
    """pygls' converter, except that params and results of methods outside LSP stay plain JSON (dicts and lists)
    instead of becoming namedtuples, which would mangle keys that are not identifiers. Used by the test client and
    the benchmark too."""
    converter: cattrs.Converter = default_converter()  # type: ignore[no-untyped-call]  # pygls leaves it unannotated
    for cls in (JsonRPCRequestMessage, JsonRPCNotification, JsonRPCResponseMessage):
        converter.register_structure_hook(cls, lambda obj, cls: cls(**obj))
    return converter


class CrashGuardServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("crash-guard", __version__, text_document_sync_kind=lsp.TextDocumentSyncKind.None_,
                         converter_factory=plain_json_converter, protocol_cls=HandshakeProtocol)
        self.sidecar: Sidecar | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._ticker: Ticker | None = None
        self.quick = WorkerPool("quick requests", QUICK_WORKERS, QUICK_QUEUE)
        self.run_requests = WorkerPool("run requests", RUN_REQUEST_WORKERS, RUN_REQUEST_QUEUE)
        self._closed = False  # after shutdown nothing more is sent: the client may already have closed the pipe

    # -- plumbing --------------------------------------------------------------------------------------
    def core(self) -> Sidecar:
        if self.sidecar is None:
            raise JsonRpcException("server not initialized", code=SERVER_NOT_INITIALIZED)
        return self.sidecar

    def bind_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def emit(self, method: str, params: Any) -> None:
        """Send a notification from any thread (the protocol's writer belongs to the event loop)."""
        loop = self._loop
        if self._closed or loop is None or loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            self.protocol.notify(method, params)
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (exit): nobody to send to
            loop.call_soon_threadsafe(self.protocol.notify, method, params)

    async def off_loop(self, fn: Callable[..., T], *args: Any, pool: WorkerPool | None = None) -> T:
        """Run a blocking call on a request pool (the quick one unless told); a full pool answers SERVER_BUSY."""
        try:
            future = (pool or self.quick).submit(fn, *args)
        except PoolBusy as exc:
            raise JsonRpcException(f"Server busy: {exc}", code=p.SERVER_BUSY,
                                   data={"inFlight": exc.in_flight, "limit": exc.limit}) from None
        except RuntimeError:  # closed: the client already asked for shutdown
            raise JsonRpcException("Server shutting down", code=p.SERVER_BUSY) from None
        return await asyncio.wrap_future(future)

    # -- sampling --------------------------------------------------------------------------------------
    def start_sampling(self) -> None:
        if self._ticker is None:
            self._ticker = Ticker(lambda: self.core().tick(), lambda: self.core().settings.interval)
            self._ticker.start()

    def reschedule(self) -> None:
        """New settings: take the next sample now, at the new interval."""
        if self._ticker is not None:
            self._ticker.wake()

    def stop_sampling(self) -> None:
        """Shutdown: stop sampling and refuse new requests; nothing in flight is waited for."""
        self._closed = True
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None
        self.quick.close()
        self.run_requests.close()
        if self.sidecar is not None:
            self.sidecar.close()


class ClientLogHandler(logging.Handler):
    """Forwards the sidecar's own log records (not pygls') to the client's window/logMessage."""

    _TYPES = ((logging.ERROR, lsp.MessageType.Error), (logging.WARNING, lsp.MessageType.Warning),
              (logging.INFO, lsp.MessageType.Info))

    def __init__(self, server: CrashGuardServer, level: int = logging.INFO) -> None:
        super().__init__(level)
        self._server = server

    def emit(self, record: logging.LogRecord) -> None:
        kind = next((t for lvl, t in self._TYPES if record.levelno >= lvl), lsp.MessageType.Log)
        try:
            message = self.format(record)
        except Exception:
            return
        self._server.emit(lsp.WINDOW_LOG_MESSAGE, lsp.LogMessageParams(type=kind, message=message))


def _invalid(exc: p.ParamsError | SettingsError) -> JsonRpcInvalidParams:
    return JsonRpcInvalidParams(f"Invalid params: {exc}", data={"field": exc.field})


def _parsed(parse: Callable[[Any], T], params: Any) -> T:
    """Params through their parser; a bad one becomes InvalidParams naming the field."""
    try:
        return parse(params)
    except (p.ParamsError, SettingsError) as exc:
        raise _invalid(exc) from None


def build_server() -> CrashGuardServer:
    server = CrashGuardServer()

    @server.feature(lsp.INITIALIZE)
    def initialize(ls: CrashGuardServer, params: lsp.InitializeParams) -> None:
        check_client_version(params.initialization_options)
        settings = _parsed(settings_from_initialization, params.initialization_options)
        ls.bind_loop()
        if ls.sidecar is not None:  # a client that initializes again gets a fresh core
            ls.sidecar.close()
        ls.sidecar = Sidecar(settings, ls.emit)

    @server.feature(lsp.INITIALIZED)
    def initialized(ls: CrashGuardServer, params: lsp.InitializedParams) -> None:
        # Start lean: give back what imports and initialize's one-off structuring left on the heap.
        emergency_cleanup()
        ls.start_sampling()
        runs = ", ".join(str(d) for d in ls.core().settings.runs_paths()) or "no runs directory"
        log.info("Crash Guard sidecar %s ready on Python %s (runs in %s)", __version__, sys.version.split()[0], runs)

    @server.feature(lsp.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(ls: CrashGuardServer, params: lsp.DidChangeConfigurationParams) -> None:
        core = ls.core()
        try:
            settings = settings_from_configuration(core.settings, params.settings)
        except SettingsError as exc:  # a notification has no reply: tell the user, keep the old settings
            log.warning("settings rejected, previous settings kept: %s", exc)
            ls.window_show_message(lsp.ShowMessageParams(type=lsp.MessageType.Error,
                                                         message=f"Crash Guard: setting rejected: {exc}"))
            return
        core.apply_settings(settings)
        ls.reschedule()

    @server.feature(p.UPDATE_SETTINGS)
    async def update_settings(ls: CrashGuardServer, params: Any) -> dict[str, Any]:
        core = ls.core()
        settings = _parsed(lambda raw: core.settings.updated(p.parse_update_settings(raw)), params)
        core.apply_settings(settings)
        ls.reschedule()
        return {"settings": settings.to_wire()}

    @server.feature(p.STATUS)
    async def status(ls: CrashGuardServer, params: Any) -> Any:
        _parsed(p.parse_empty, params)
        return p.to_wire(await ls.off_loop(ls.core().status))

    @server.feature(p.RUNS)
    async def runs(ls: CrashGuardServer, params: Any) -> Any:
        _parsed(p.parse_empty, params)
        return p.to_wire(await ls.off_loop(ls.core().runs))

    @server.feature(p.CLEANUP)
    async def cleanup(ls: CrashGuardServer, params: Any) -> Any:
        args = _parsed(p.CleanupParams.parse, params)
        return p.to_wire(await ls.off_loop(ls.core().cleanup, args.runs, args.timeout, pool=ls.run_requests))

    @server.feature(p.STOP_RUN)
    async def stop_run(ls: CrashGuardServer, params: Any) -> Any:
        args = _parsed(p.StopRunParams.parse, params)
        return p.to_wire(await ls.off_loop(ls.core().stop, args.run, args.timeout, args.dir, pool=ls.run_requests))

    @server.feature(p.PROCESS_DETAIL)
    async def process_detail(ls: CrashGuardServer, params: Any) -> Any:
        pid = _parsed(p.parse_process_detail, params)
        detail = await ls.off_loop(ls.core().process_detail, pid)
        if detail is None:
            raise JsonRpcInvalidParams(f"Invalid params: pid: no process {pid} (or not readable)",
                                       data={"field": "pid"})
        return p.to_wire(detail)

    @server.feature(p.LOCK_HOLDERS)
    async def lock_holders(ls: CrashGuardServer, params: Any) -> Any:
        run_dir = _parsed(p.parse_lock_holders, params)
        return p.to_wire(await ls.off_loop(ls.core().lock_holders, run_dir))

    @server.feature(p.END_LOCK_HOLDER)
    async def end_lock_holder(ls: CrashGuardServer, params: Any) -> Any:
        args = _parsed(p.EndLockHolderParams.parse, params)
        return p.to_wire(await ls.off_loop(ls.core().end_lock_holder, args.dir, args.pid, args.create_time, args.force,
                                           pool=ls.run_requests))

    @server.feature(p.HISTORY)
    async def history(ls: CrashGuardServer, params: Any) -> Any:
        seconds = _parsed(p.parse_history, params)
        return await ls.off_loop(lambda: p.to_wire(ls.core().history(seconds)))

    @server.feature(lsp.SHUTDOWN)
    def shutdown(ls: CrashGuardServer, params: Any) -> None:
        ls.stop_sampling()

    return server
