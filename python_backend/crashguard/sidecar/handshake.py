"""The version handshake of the wire protocol (docs/protocol.md, "Handshake").

The client sends the protocol version it speaks in `initialize`'s `initializationOptions.protocolVersion`; a
different one is refused there with one clear error (the client shows it instead of a gauge that silently stops
updating). The sidecar announces its own version in the `initialize` result, under
`capabilities.experimental.crashGuard.protocolVersion`, so a client can refuse an older sidecar that never looks
at the client's version. Bump PROTOCOL_VERSION with every incompatible change of a payload or a method, and the
same constant in extension/src/protocol.ts (a test compares them).

Standard library only at import (pygls is imported when a client is refused): the monitor's starter names its
socket after PROTOCOL_VERSION and must start fast. server.py puts the announcement into the initialize result.
"""

from __future__ import annotations

from typing import Any

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
    from pygls.exceptions import JsonRpcInvalidParams

    raise JsonRpcInvalidParams(
        f"Crash Guard protocol mismatch: the client speaks protocol {theirs!r}, this sidecar (crashguard "
        f"{__version__}) speaks protocol {PROTOCOL_VERSION}; install matching versions",
        data={"field": "protocolVersion", "expected": PROTOCOL_VERSION, "got": theirs})


def announcement() -> dict[str, Any]:
    """What the initialize result carries under capabilities.experimental."""
    return {"crashGuard": {"protocolVersion": PROTOCOL_VERSION, "version": __version__}}
