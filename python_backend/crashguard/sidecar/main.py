"""The memory monitor's entry: JSON-RPC over stdio (LSP framing). The extension's bundled launcher calls `main()`
directly; `crashguard serve` is the same from an installed package. Imports nothing heavy until it runs."""

from __future__ import annotations

import logging
import os
import sys
from typing import BinaryIO


def claim_stdout() -> BinaryIO:
    """Keep the real stdout for the protocol and point fd 1 (and sys.stdout) at stderr, so a stray print, a
    library's logging or a C extension's output can never corrupt the stream."""
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "wb")


def block_ssl() -> None:
    """The sidecar talks over pipes and never needs TLS, but asyncio imports ssl when it can, which maps OpenSSL:
    ~4 MB of the sidecar's ~45 MB RSS budget. Mark ssl unavailable (asyncio is built to run without it). Only
    effective before asyncio is first imported, so CLI modules import asyncio inside their `run`."""
    if "asyncio" not in sys.modules:
        sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]


def main() -> int:
    """The memory monitor over stdio (the extension's bundled launcher and `crashguard serve` call this)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    block_ssl()
    protocol_out = claim_stdout()
    # pygls logs every message it sends at INFO: costly at one sample a second, and noise.
    logging.getLogger("pygls").setLevel(logging.WARNING)
    from .server import ClientLogHandler, build_server  # after block_ssl: pygls imports asyncio

    server = build_server()
    handler = ClientLogHandler(server)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    logging.getLogger("crashguard").addHandler(handler)
    server.start_io(sys.stdin.buffer, protocol_out)
    return 0
