"""`crashguard serve`: the sidecar, JSON-RPC over stdio (LSP framing) for the VS Code extension."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import BinaryIO


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("serve", help="run the sidecar: JSON-RPC over stdio for the VS Code extension")
    parser.set_defaults(run=run)


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
    """The sidecar without the rest of the CLI (the extension's bundled launcher calls this)."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(argparse.Namespace())


def run(args: argparse.Namespace) -> int:
    block_ssl()
    protocol_out = claim_stdout()
    # pygls logs every message it sends at INFO: costly at one sample a second, and noise.
    logging.getLogger("pygls").setLevel(logging.WARNING)
    from ..sidecar.server import ClientLogHandler, build_server  # here, so other commands do not pay for pygls

    server = build_server()
    handler = ClientLogHandler(server)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    logging.getLogger("python_backend").addHandler(handler)
    server.start_io(sys.stdin.buffer, protocol_out)
    return 0
