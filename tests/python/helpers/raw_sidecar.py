"""A synchronous JSON-RPC client for the real sidecar over stdio that keeps every frame's raw bytes, for tests that
check frames exactly as they went over the wire and cannot be async (Hypothesis drives plain functions).

`RawSidecar(settings)` starts `python -m crashguard serve`, initializes it and collects what it sends on a reader
thread; `request()` waits for the answer (a result, or the JSON-RPC error as a dict under "error").
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from wire_frames import check_frame


class RawSidecar:
    def __init__(self, settings: dict[str, Any], env: dict[str, str] | None = None) -> None:
        self._scratch = tempfile.TemporaryDirectory(prefix="crashguard-raw-sidecar-")
        self.proc = subprocess.Popen([sys.executable, "-m", "crashguard", "serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=self._scratch.name,
                                     env={**os.environ, **(env or {})})
        self.bodies: list[bytes] = []  # every frame's body, as sent
        self.frames: list[Any] = []  # the same, parsed and checked (wire_frames.check_frame)
        self.problems: list[str] = []  # frames that failed the checks
        self._cond = threading.Condition()
        self._next_id = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.request("initialize", {"processId": None, "capabilities": {},
                                    "initializationOptions": {"settings": settings}})
        self._send({"jsonrpc": "2.0", "method": "initialized", "params": {}})

    # -- wire ------------------------------------------------------------------------------------------------------
    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode()
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            header = b""
            while not header.endswith(b"\r\n\r\n"):
                byte = out.read(1)
                if not byte:
                    return
                header += byte
            match = re.search(rb"Content-Length: (\d+)", header)
            assert match, header
            body = out.read(int(match.group(1)))
            try:
                frame = check_frame(body)
            except (AssertionError, ValueError) as exc:
                frame = json.loads(body)
                self.problems.append(f"{exc}: {body[:200]!r}")
            with self._cond:
                self.bodies.append(body)
                self.frames.append(frame)
                self._cond.notify_all()

    def request(self, method: str, params: Any = None, timeout: float = 60.0) -> Any:
        with self._cond:
            self._next_id += 1
            request_id = self._next_id
        self._send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        answer = self._wait(lambda f: isinstance(f, dict) and f.get("id") == request_id and "method" not in f,
                            timeout, f"an answer to {method}")
        return {"error": answer["error"]} if "error" in answer else answer.get("result")

    def _wait(self, match: Any, timeout: float, what: str, start: int = 0) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for frame in self.frames[start:]:
                    if match(frame):
                        return frame
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"no {what} within {timeout} s (sidecar exit code {self.proc.poll()})")
                self._cond.wait(min(left, 0.1))

    # -- samples ---------------------------------------------------------------------------------------------------
    def samples(self) -> list[dict[str, Any]]:
        with self._cond:
            return [f["params"] for f in self.frames if isinstance(f, dict) and f.get("method") == "crashGuard/sample"]

    def wait_samples(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The next `count` samples sent after this call."""
        start = len(self.samples())
        deadline = time.monotonic() + timeout
        while len(self.samples()) < start + count:
            assert time.monotonic() < deadline, f"only {len(self.samples()) - start} samples in {timeout} s"
            assert self.proc.poll() is None, f"the sidecar exited ({self.proc.returncode})"
            time.sleep(0.02)
        return self.samples()[start:start + count]

    def logs(self) -> list[str]:
        with self._cond:
            return [f["params"]["message"] for f in self.frames
                    if isinstance(f, dict) and f.get("method") == "window/logMessage"]

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.request("shutdown", None, timeout=15)
                self._send({"jsonrpc": "2.0", "method": "exit", "params": None})
                self.proc.wait(timeout=15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self._scratch.cleanup()
