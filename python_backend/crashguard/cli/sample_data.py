"""`crashguard sample-data [--out DIR] [--realistic]`: write a synthetic Task01_BrainTumour dataset.

Default: small cubes (48³) with a large central tumour, for the demo and quick tests. `--realistic`: cases on
real brain anatomy at Task01's real size (240 x 240 x 155 x 4), with tumours of realistic size and position.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sample-data", help="write a synthetic Task01_BrainTumour dataset")
    parser.add_argument("--out", type=Path, default=Path("data/Task01_BrainTumour"),
                        help="task folder to write (default: data/Task01_BrainTumour)")
    parser.add_argument("--realistic", action="store_true",
                        help="real brain anatomy (MNI152) at Task01's size, 240x240x155x4 (needs nilearn)")
    parser.add_argument("--cases", type=int, default=None, help="number of cases (default 16, realistic 12)")
    parser.add_argument("--size", type=int, default=None,
                        help="edge of each cubic volume in voxels (default 48; not with --realistic)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="processes writing realistic cases (default min(2, cpus); ~0.6 GB each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    try:
        if args.realistic:
            if args.size is not None:
                raise ValueError("--size does not apply to --realistic (Task01's grid, 240x240x155)")
            from ..training.realistic import TemplateMissing, write_realistic_dataset

            cases = args.cases if args.cases is not None else 12
            try:
                out = write_realistic_dataset(args.out, cases=cases, seed=args.seed, jobs=args.jobs)
            except TemplateMissing as exc:
                raise ValueError(str(exc)) from None
            what = f"{cases} realistic cases of 240x240x155x4"
        else:
            from ..training.sample_data import write_sample_dataset

            cases = args.cases if args.cases is not None else 16
            size = args.size if args.size is not None else 48
            out = write_sample_dataset(args.out, cases=cases, size=size, seed=args.seed)
            what = f"{cases} cases of {size}^3 voxels"
    except ValueError as exc:
        print(f"crashguard sample-data: {exc}", file=sys.stderr)
        return 2
    print(f"crashguard sample-data: wrote {what} to {out} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0
