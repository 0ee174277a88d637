"""Drive the real sidecar (`python -m crashguard serve`) over stdio with pytest-lsp's client."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from lsprotocol import types as lsp
from pytest_lsp.client import LanguageClient, register_lsp_features

from crashguard.sidecar import protocol as p
from crashguard.sidecar.server import plain_json_converter

SERVER = [sys.executable, "-m", "crashguard", "serve"]


class Session:
    def __init__(self, client: LanguageClient) -> None:
        self.client = client
        self.initialize_result: Any = None
        self.received: dict[str, list[tuple[float, Any]]] = {m: [] for m in p.NOTIFICATIONS}
        self.closed = False
        for method in p.NOTIFICATIONS:
            client.feature(method)(self._collector(method))

    def _collector(self, method: str) -> Callable[[Any, Any], None]:
        def collect(ls: Any, params: Any) -> None:  # pygls passes the client as `ls`
            self.received[method].append((time.monotonic(), params))

        return collect

    @property
    def shown(self) -> list[Any]:
        """window/showMessage params (recorded by pytest-lsp's client)."""
        return self.client.messages

    @property
    def pid(self) -> int:
        assert self.client._server is not None
        return self.client._server.pid

    def of(self, method: str) -> list[Any]:
        return [params for _, params in self.received[method]]

    async def request(self, method: str, params: Any = None, timeout: float = 60.0) -> Any:
        return await asyncio.wait_for(self.client.protocol.send_request_async(method, params), timeout)

    async def wait_for(self, method: str, predicate: Callable[[Any], bool] = lambda _: True,
                       timeout: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for params in self.of(method):
                if predicate(params):
                    return params
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {method} matching within {timeout} s; got {self.of(method)[-3:]}")

    async def close(self) -> tuple[float, float]:
        """shutdown, then exit, here rather than when the session ends: the seconds until shutdown was answered
        and from exit until the server process had ended."""
        started = time.monotonic()
        await asyncio.wait_for(self.client.shutdown_async(None), 15)
        answered = time.monotonic()
        self.client.exit(None)
        assert self.client._server is not None
        await asyncio.wait_for(self.client._server.wait(), 15)
        self.closed = True
        return answered - started, time.monotonic() - answered

    async def wait_samples(self, count: int, timeout: float = 30.0) -> list[Any]:
        start = len(self.received[p.SAMPLE])
        deadline = time.monotonic() + timeout
        while len(self.received[p.SAMPLE]) < start + count:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(self.received[p.SAMPLE]) - start} samples in {timeout} s")
            await asyncio.sleep(0.02)
        return self.of(p.SAMPLE)[start:start + count]


@asynccontextmanager
async def sidecar(settings: dict[str, Any] | None = None, cwd: str | None = None,
                  command: list[str] | None = None, env: dict[str, str] | None = None
                  ) -> AsyncIterator[Session]:
    client = LanguageClient(converter_factory=plain_json_converter)
    register_lsp_features(client)
    session = Session(client)
    # A scratch cwd: the default runs directory ("runs") must never be a real workspace's runs.
    scratch = tempfile.TemporaryDirectory(prefix="crashguard-sidecar-")
    await client.start_io(*(command or SERVER), cwd=cwd or scratch.name, env={**os.environ, **(env or {})})
    try:
        session.initialize_result = await client.initialize_session(lsp.InitializeParams(
            capabilities=lsp.ClientCapabilities(),
            initialization_options={"settings": settings or {}},
        ))
        yield session
        if not session.closed:
            await asyncio.wait_for(client.shutdown_session(), 15)
    finally:
        server = client._server
        if server is not None and server.returncode is None:
            # The session failed before a clean exit: end the server (pygls' stop() would wait for it forever).
            if server.stdin is not None:
                server.stdin.close()  # EOF also ends a server started behind a wrapper
            server.terminate()
        await asyncio.wait_for(client.stop(), 15)
        scratch.cleanup()
