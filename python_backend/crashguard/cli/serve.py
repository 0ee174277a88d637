"""`crashguard serve`: the memory monitor, JSON-RPC with LSP framing for the VS Code extension: over stdio (one
client), or `--ensure` / `--daemon`: this user's one shared monitor on a unix socket (crashguard/sidecar/main.py)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("serve", help="run the memory monitor: JSON-RPC over stdio (or --ensure: the shared "
                            "monitor on a unix socket) for the VS Code extension")
    from ..sidecar.main import add_arguments

    add_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..sidecar.main import main

    argv = ["--ensure"] if args.ensure else ["--daemon"] if args.daemon else []
    if args.lock_fd is not None:
        argv += ["--lock-fd", str(args.lock_fd)]
    if args.idle_grace is not None:
        argv += ["--idle-grace", str(args.idle_grace)]
    return main(argv)
