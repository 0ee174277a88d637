"""The version handshake of the wire protocol (docs/protocol.md, "Handshake").

The client sends the protocol version it speaks in `initialize`'s `initializationOptions.protocolVersion`; a
different one is refused there with one clear error (the client shows it instead of a gauge that silently stops
updating). The sidecar announces its own version in the `initialize` result, under
`capabilities.experimental.crashGuard.protocolVersion`, so a client can refuse an older sidecar that never looks
at the client's version. Bump PROTOCOL_VERSION with every incompatible change of a payload or a method, and the
same constant in extension/src/protocol.ts (a test compares them).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcInvalidParams
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import lsp_method

from ..util.version import __version__

PROTOCOL_VERSION = 2


def check_client_version(options: Any) -> None:
    """Refuse a client that speaks another protocol version (a client that names none is accepted: tools and
    tests that only read samples)."""
    if not isinstance(options, dict) or "protocolVersion" not in options:
        return
    theirs = options["protocolVersion"]
    if theirs == PROTOCOL_VERSION and not isinstance(theirs, bool):
        return
    raise JsonRpcInvalidParams(
        f"Crash Guard protocol mismatch: the client speaks protocol {theirs!r}, this sidecar (crashguard "
        f"{__version__}) speaks protocol {PROTOCOL_VERSION}; install matching versions",
        data={"field": "protocolVersion", "expected": PROTOCOL_VERSION, "got": theirs})


def announcement() -> dict[str, Any]:
    """What the initialize result carries under capabilities.experimental."""
    return {"crashGuard": {"protocolVersion": PROTOCOL_VERSION, "version": __version__}}


class HandshakeProtocol(LanguageServerProtocol):
    """pygls' protocol, with the sidecar's protocol version in the initialize result's capabilities."""

    @lsp_method(lsp.INITIALIZE)
    def lsp_initialize(self, params: lsp.InitializeParams) -> Generator[Any, Any, lsp.InitializeResult]:
        result: lsp.InitializeResult = yield from super().lsp_initialize(params)
        result.capabilities.experimental = announcement()
        return result
