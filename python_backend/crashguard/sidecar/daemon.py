"""The shared memory monitor: ONE process per user, host and build, serving every VS Code window of that user over a
unix socket (JSON-RPC with LSP framing, one pygls server per connection, all of them on the hub's one core).

Life: started DETACHED by the first window's starter (starter.py), holding the flock of its lock file from the
starter until it exits, so a second monitor of the same build can never start. It binds its socket (endpoint.py)
before it imports pygls: windows connect at once, and what they send waits in the socket until it serves. It
serves while any window is connected; after the last one leaves it waits IDLE_GRACE seconds for another (a window
reload reconnects within them) and exits, at once when the last window asked it to stop (crashGuard/stopMonitor),
and at once whoever is connected when a window asked it to make way for a new one (Restart Memory Monitor:
`{"replace": true}`). SIGTERM ends it too. On the way out it removes its socket before it lets go of the lock.

Only this user: the folder is private (0700, util.user_dirs), the socket 0600, and every connection's peer
credentials (SO_PEERCRED) must carry this user's uid; a connection whose credentials are another uid's, or cannot
be read, is closed before a byte is read from it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

from pygls.io_ import run_async

from ..guard.cleanup import emergency_cleanup
from .endpoint import Endpoint, remove_if_ours
from .hub import Hub
from .server import ClientLogHandler, CrashGuardServer, build_server

log = logging.getLogger(__name__)
IDLE_GRACE = 30.0  # seconds the monitor waits for a window after the last one left (a reload comes back sooner)
# A window that stops reading (a frozen extension host) is dropped before its unsent samples cost the monitor more.
WRITE_BUFFER_LIMIT = 8 << 20
_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_credentials(sock: Any) -> tuple[int, int] | None:
    """(pid, uid) of the process at the other end of a unix socket, from the kernel (SO_PEERCRED); None when
    they cannot be read."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size)
        pid, uid, _gid = _CREDENTIALS.unpack(raw)
    except (OSError, struct.error, AttributeError):
        return None
    return pid, uid


class SocketWriter:
    """pygls' writer over an asyncio stream (event loop only), bounded: past WRITE_BUFFER_LIMIT of unsent bytes the
    connection is dropped instead of buffered."""

    def __init__(self, writer: asyncio.StreamWriter, on_overflow: Callable[[], None],
                 limit: int = WRITE_BUFFER_LIMIT) -> None:
        self._writer = writer
        self._on_overflow = on_overflow
        self._limit = limit

    def write(self, data: bytes) -> None:
        transport = self._writer.transport
        if transport.is_closing():
            return
        if transport.get_write_buffer_size() + len(data) > self._limit:
            log.warning("a window stopped reading (%d bytes unsent): dropping its connection",
                        transport.get_write_buffer_size())
            self._on_overflow()
            return
        self._writer.write(data)

    def close(self) -> None:
        self._writer.close()


class IdleExit:
    """Counts connections; calls `stop` `grace` seconds after the count falls to zero (at once when the last one
    to leave asked for it), unless one comes back first. Event loop only."""

    def __init__(self, grace: float, stop: Callable[[], None]) -> None:
        self.grace = grace
        self._stop = stop
        self._count = 0
        self._timer: asyncio.TimerHandle | None = None

    @property
    def count(self) -> int:
        return self._count

    def arm(self, delay: float) -> None:
        self._cancel()
        self._timer = asyncio.get_running_loop().call_later(delay, self._stop)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def enter(self) -> None:
        self._count += 1
        self._cancel()

    def leave(self, immediate: bool = False, quiet: bool = False) -> None:
        """A connection ended; `quiet`: one that never initialized (a starter's probe), not worth a log line."""
        self._count -= 1
        if self._count == 0:
            if immediate:
                log.info("the last window stopped the memory monitor: exiting")
            elif not quiet:
                log.info("no window connected: exiting in %g s unless one connects", self.grace)
            self.arm(0.0 if immediate else self.grace)


async def _connection(hub: Hub, idle: IdleExit, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    credentials = peer_credentials(writer.get_extra_info("socket"))
    if credentials is None or credentials[1] != os.geteuid():
        who = f"uid {credentials[1]} (pid {credentials[0]})" if credentials else "a peer of unreadable credentials"
        log.warning("refused a connection from %s: only this user's windows may use the monitor", who)
        writer.close()
        return
    idle.enter()
    server: CrashGuardServer = build_server(hub)
    stop = threading.Event()

    def close() -> None:
        stop.set()
        writer.close()

    server.on_disconnect = close
    server.protocol.set_writer(SocketWriter(writer, server.disconnect))
    try:
        await run_async(stop_event=stop, reader=reader, protocol=server.protocol, logger=log,
                        error_handler=server.report_server_error)
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        log.warning("a window's connection failed: %s", exc)  # a torn frame, a header line past the stream limit
    finally:
        server.leave()
        writer.close()
        if server.initialized:
            log.info("a window left; %d still connected", hub.connections)
        idle.leave(immediate=server.wants_stop, quiet=not server.initialized)
        if server.wants_replace:  # Restart Memory Monitor: the other windows reconnect to the one that replaces it
            log.info("a window restarts the memory monitor: exiting")
            idle.arm(0.0)


async def serve(listener: socket.socket, hub: Hub, grace: float = IDLE_GRACE) -> None:
    """Serve on `listener` until idle for `grace` seconds, or SIGTERM/SIGINT."""
    loop = asyncio.get_running_loop()
    hub.bind_loop()
    done = asyncio.Event()
    idle = IdleExit(grace, done.set)
    server = await asyncio.start_unix_server(lambda r, w: _connection(hub, idle, r, w), sock=listener)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    idle.arm(grace)  # the window that started it connects within a second; nobody at all: gone after the grace
    await done.wait()
    # No new connections (a starter sees the socket refuse and waits for the lock, never reaching this monitor on its
    # way out); asyncio.run then cancels the open ones (each leaves the hub).
    server.close()
    hub.close()


def run_daemon(ep: Endpoint, listener: socket.socket, grace: float = IDLE_GRACE) -> int:
    """Serve on `listener` (bound at `ep.socket` by endpoint.bind, with the lock held) until idle or told to stop."""
    st = os.lstat(ep.socket)
    identity = (st.st_dev, st.st_ino)
    hub = Hub(shared=True)
    handler = ClientLogHandler(hub)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    logging.getLogger("crashguard").addHandler(handler)
    log.info("Crash Guard memory monitor (build %s, pid %d) listening on %s", ep.build, os.getpid(), ep.socket)
    emergency_cleanup()  # start lean: give back what the imports left on the heap
    try:
        asyncio.run(serve(listener, hub, grace))
    finally:
        hub.close()
        remove_if_ours(ep.socket, identity)  # before the lock goes (at exit): a new monitor never loses its socket
        listener.close()
        log.info("memory monitor exiting")
    return 0
