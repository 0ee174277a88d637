"""`crashguard check-data [--config PATH | --task-dir DIR] [--fast]`: read every case once and list problems.

Exit 0 if the data is clean, 1 if problems were found (one per line on stdout), 2 if it cannot be checked.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("check-data", help="list unreadable files, shape/affine mismatches and "
                                   "unexpected labels in a Decathlon task folder")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--config", type=Path, help="take the task folder from this training config")
    where.add_argument("--task-dir", type=Path, help="the task folder (default data/Task01_BrainTumour)")
    parser.add_argument("--fast", action="store_true", help="image headers only (labels are still read)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..training.check import DataError, check_dataset
    from ..training.config import ConfigError, load_config

    task_dir = args.task_dir or Path("data/Task01_BrainTumour")
    if args.config:
        try:
            task_dir = load_config(args.config).data.task_dir
        except ConfigError as exc:
            print(f"crashguard check-data: {args.config}: {exc}", file=sys.stderr)
            return 2
    if not task_dir.is_dir():
        print(f"crashguard check-data: {task_dir} does not exist", file=sys.stderr)
        return 2
    try:
        count, problems = check_dataset(task_dir, "fast" if args.fast else "full")
    except DataError as exc:
        print(f"crashguard check-data: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(problem)
    print(f"crashguard check-data: {count} cases, {len(problems)} problems in {task_dir}", file=sys.stderr)
    return 1 if problems else 0
