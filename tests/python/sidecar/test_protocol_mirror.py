"""protocol.py is the source of truth: the TypeScript mirror and the document name the same methods. (Every
payload's fields are compared with protocol.ts's checkers by tests/extension/unit/protocol.test.ts.)"""

from __future__ import annotations

import re
from pathlib import Path

from crashguard.sidecar import protocol as p

REPO = Path(__file__).resolve().parents[3]
TS = REPO / "extension" / "src" / "protocol.ts"
DOC = REPO / "docs" / "protocol.md"


def _ts_constants(text: str) -> dict[str, str]:
    """METHOD_* constants naming Crash Guard's own methods (standard LSP ones, e.g. didChangeConfiguration,
    are not part of protocol.py)."""
    found = re.findall(r"export const (METHOD_\w+)\s*=\s*['\"]([^'\"]+)['\"]", text)
    return {name: value for name, value in found if value.startswith("crashGuard/")}


def test_typescript_method_constants_equal_protocol_py() -> None:
    constants = _ts_constants(TS.read_text())
    assert constants, "no METHOD_* constants found in protocol.ts"
    assert sorted(constants.values()) == sorted(p.METHODS)
    # Same constant names too: METHOD_STOP_RUN <-> STOP_RUN.
    python_names = {getattr(p, n): n for n in dir(p) if n.isupper() and getattr(p, n) in p.METHODS}
    assert {v: k.removeprefix("METHOD_") for k, v in constants.items()} == python_names


def test_protocol_document_lists_every_method() -> None:
    text = DOC.read_text()
    missing = [m for m in p.METHODS if f"`{m}`" not in text]
    assert missing == []
