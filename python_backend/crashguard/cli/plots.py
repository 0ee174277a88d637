"""`crashguard plots --run runs/NAME`: memory timeline, training curves and (optionally) an overlay as PNGs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("plots", help="write a run's memory timeline, training curves and an overlay (PNG)")
    parser.add_argument("--run", dest="run_dir", type=Path, required=True, help="the run folder (metrics.jsonl)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default <run>/plots)")
    parser.add_argument("--image", type=Path, help="an MRI volume for the overlay")
    parser.add_argument("--label", type=Path, help="its label volume")
    parser.add_argument("--prediction", type=Path, help="a predicted segmentation to draw under the label")
    parser.add_argument("--warning", type=float, default=80, help="warning line, percent (default 80)")
    parser.add_argument("--critical", type=float, default=90, help="critical line, percent (default 90)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..plots.from_run import plot_run

    if (args.image is None) != (args.label is None):
        print("crashguard plots: --image and --label go together", file=sys.stderr)
        return 2
    case = (args.image, args.label, args.prediction) if args.image is not None else None
    try:
        written = plot_run(args.run_dir, args.out, args.warning, args.critical, case)
    except (FileNotFoundError, ValueError) as exc:
        print(f"crashguard plots: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0
