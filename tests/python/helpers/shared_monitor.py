"""Drive the shared memory monitor (`crashguard serve --ensure`, then the unix socket) as several windows would:
each window a real pygls client over its own connection. Every monitor a test starts lives in a private runtime
folder of its own (XDG_RUNTIME_DIR), never in the user's, and is killed at the end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from lsprotocol import types as lsp
from pygls.io_ import run_async
from pytest_lsp.client import LanguageClient, register_lsp_features
from sidecar_session import Session

from crashguard.sidecar.server import plain_json_converter

ENSURE = [sys.executable, "-m", "crashguard", "serve", "--ensure"]
log = logging.getLogger(__name__)


@dataclass
class Host:
    """One private runtime folder: the monitors started in it and how to reach them."""

    xdg: Path
    cwd: Path
    grace: float = 30.0
    pids: set[int] = field(default_factory=set)

    @property
    def folder(self) -> Path:
        return self.xdg / "crashguard"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "XDG_RUNTIME_DIR": str(self.xdg)}

    def ensure_process(self) -> subprocess.Popen[str]:
        return subprocess.Popen([*ENSURE, "--idle-grace", str(self.grace)], env=self.env, cwd=self.cwd,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def ensure(self) -> dict[str, Any]:
        """`crashguard serve --ensure`: where the monitor listens (started when none runs)."""
        proc = self.ensure_process()
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, f"--ensure exited {proc.returncode}: {err}"
        found: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        self.pids.add(found["pid"])
        return found

    def monitors(self) -> list[psutil.Process]:
        """The live shared monitors of this folder (`--daemon` processes with this XDG_RUNTIME_DIR)."""
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if "--daemon" in (proc.info["cmdline"] or []) and \
                        proc.environ().get("XDG_RUNTIME_DIR") == str(self.xdg) and proc.status() != "zombie":
                    found.append(proc)
            except psutil.Error:
                continue
        return found

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.folder.glob("monitor-*.log"))

    def kill_all(self) -> None:
        for proc in self.monitors():
            with contextlib.suppress(psutil.Error):
                proc.kill()
        for pid in self.pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def private_host(grace: float = 30.0) -> Iterator[Host]:
    # Short and private: a unix socket path is at most 107 bytes, and runtime_dir() wants a 0700 folder.
    xdg = Path(tempfile.mkdtemp(prefix="cg-xdg-", dir="/tmp"))
    xdg.chmod(0o700)
    cwd = Path(tempfile.mkdtemp(prefix="cg-cwd-", dir="/tmp"))
    host = Host(xdg, cwd, grace)
    try:
        yield host
    finally:
        host.kill_all()
        subprocess.run(["rm", "-rf", str(xdg), str(cwd)], check=False)


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Window(Session):
    """A Session over a socket connection (no server process of its own)."""

    def __init__(self, client: LanguageClient) -> None:
        super().__init__(client)
        self.writer: asyncio.StreamWriter | None = None
        self.connection: asyncio.Task[Any] | None = None

    @property
    def disconnected(self) -> bool:
        return self.connection is not None and self.connection.done()

    async def focus(self, focused: bool = True) -> None:
        self.client.protocol.notify("crashGuard/windowState", {"focused": focused})
        await asyncio.sleep(0.1)  # a notification has no answer: give the monitor a moment to take it

    async def close(self) -> tuple[float, float]:
        started = time.monotonic()
        await asyncio.wait_for(self.client.shutdown_async(None), 15)
        answered = time.monotonic()
        self.client.exit(None)
        if self.connection is not None:
            await asyncio.wait_for(self.connection, 15)  # the monitor closes the connection after exit
        self.closed = True
        return answered - started, time.monotonic() - answered


@asynccontextmanager
async def window(socket_path: str | Path, settings: dict[str, Any] | None = None) -> AsyncIterator[Window]:
    """One window: connect, initialize with `settings`, and shut down at the end."""
    client = LanguageClient(converter_factory=plain_json_converter)
    register_lsp_features(client)
    session = Window(client)
    reader, writer = await asyncio.open_unix_connection(str(socket_path))
    session.writer = writer
    client.protocol.set_writer(writer)  # type: ignore[arg-type]  # an asyncio StreamWriter writes as pygls wants
    session.connection = asyncio.create_task(run_async(stop_event=client._stop_event, reader=reader,
                                                       protocol=client.protocol, logger=log))
    try:
        session.initialize_result = await asyncio.wait_for(client.initialize_session(lsp.InitializeParams(
            capabilities=lsp.ClientCapabilities(), initialization_options={"settings": settings or {}})), 30)
        yield session
        if not session.closed and not session.disconnected:
            await session.close()
    finally:
        writer.close()
        client._stop_event.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(session.connection, 5)
