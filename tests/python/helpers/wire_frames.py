"""The sidecar's frames exactly as they go over the wire, and the checks every frame must pass (contract C2).

`TEE` sits between the test's client and the sidecar: it passes stdin through untouched and copies every byte of the
sidecar's stdout to a file. `frames()` cuts that file into JSON-RPC bodies; `check_frame()` parses one strictly and
checks what a JavaScript reader needs: no NaN/Infinity, every int within +-(2**53 - 1), and (for samples and runs
lists) at most 64 KiB.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SAFE_INT = 2**53 - 1
MAX_FRAME_BYTES = 64 * 1024

TEE = textwrap.dedent("""
    import subprocess, sys
    raw = open(sys.argv[1], "wb")
    child = subprocess.Popen(sys.argv[2:], stdout=subprocess.PIPE)
    out = sys.stdout.buffer
    while chunk := child.stdout.read1(65536):
        out.write(chunk); out.flush(); raw.write(chunk); raw.flush()
    sys.exit(child.wait())
""")


def frames(raw: bytes) -> list[bytes]:
    """The complete JSON-RPC bodies in `raw` (a frame still being written is left out)."""
    found, at = [], 0
    while (end := raw.find(b"\r\n\r\n", at)) != -1:
        match = re.search(rb"Content-Length: (\d+)", raw[at:end])
        assert match, raw[at:end]
        body = raw[end + 4:end + 4 + int(match.group(1))]
        if len(body) < int(match.group(1)):
            break
        found.append(body)
        at = end + 4 + len(body)
    return found


def strict(body: bytes) -> Any:
    def refuse(constant: str) -> object:
        raise ValueError(f"{constant} in a frame")

    return json.loads(body, parse_constant=refuse)


def ints(value: Any) -> Iterator[int]:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from ints(item)
    elif isinstance(value, list):
        for item in value:
            yield from ints(item)


def check_frame(body: bytes) -> Any:
    """The frame parsed, after the checks every frame passes; samples and runs answers also within the size cap."""
    frame = strict(body)  # raises on NaN/Infinity
    unsafe = [n for n in ints(frame) if abs(n) > SAFE_INT]
    assert not unsafe, f"ints beyond 2**53 - 1 on the wire: {unsafe[:3]}"
    result = frame.get("result") if isinstance(frame, dict) else None
    if isinstance(frame, dict) and (frame.get("method") == "crashGuard/sample"
                                    or (isinstance(result, dict) and "runsOmitted" in result)):
        assert len(body) <= MAX_FRAME_BYTES, f"a {len(body)}-byte frame"
    return frame


def read_frames(path: Path) -> list[Any]:
    return [check_frame(body) for body in frames(path.read_bytes())]


def samples_of(parsed: list[Any]) -> list[dict[str, Any]]:
    return [f["params"] for f in parsed if isinstance(f, dict) and f.get("method") == "crashGuard/sample"]
