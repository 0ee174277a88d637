"""`crashguard sample-data [--out DIR]`: write the small synthetic Task01_BrainTumour dataset."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sample-data", help="write a small synthetic Task01_BrainTumour dataset")
    parser.add_argument("--out", type=Path, default=Path("data/Task01_BrainTumour"),
                        help="task folder to write (default: data/Task01_BrainTumour)")
    parser.add_argument("--cases", type=int, default=16, help="number of cases (default 16)")
    parser.add_argument("--size", type=int, default=48, help="edge of each cubic volume in voxels (default 48)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..training.sample_data import write_sample_dataset

    try:
        out = write_sample_dataset(args.out, cases=args.cases, size=args.size, seed=args.seed)
    except ValueError as exc:
        print(f"crashguard sample-data: {exc}", file=sys.stderr)
        return 2
    print(f"crashguard sample-data: wrote {args.cases} cases of {args.size}^3 voxels to {out}", file=sys.stderr)
    return 0
