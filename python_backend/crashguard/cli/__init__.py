"""`crashguard` / `python -m crashguard`: one subcommand per module in this package.

Each module exposes `register(subparsers)`, which adds its parser and sets `run` (a function of the parsed
arguments returning the exit code). Modules import heavy libraries (torch, monai) inside `run` only, so
`crashguard monitor` and the sidecar start fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# Module names under crashguard.cli, in the order `--help` lists them.
COMMANDS = (
    "monitor",
    "cleanup",
    "serve",
    "plots",
    "train",
    "sample_data",
    "check_data",
    "infer",
    "find_batch",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crashguard", description="Keep deep-learning work from running the "
                                     "machine out of RAM or VRAM.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (to stderr)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # stdout may belong to a protocol (serve) or to JSONL (monitor --json): logs always go to stderr.
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 130
