"""`crashguard serve`: the memory monitor, JSON-RPC over stdio (LSP framing) for the VS Code extension."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("serve", help="run the memory monitor: JSON-RPC over stdio for the VS Code extension")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..sidecar.main import main

    return main()
