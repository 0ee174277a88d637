"""`crashguard infer --checkpoint FILE --input NIFTI|DIR [...] [--out DIR]`: segment with a trained model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("infer", help="sliding-window segmentation with OOM back-off -> NIfTI")
    parser.add_argument("--checkpoint", required=True, type=Path, help="a training checkpoint (step-*.pt)")
    parser.add_argument("--input", required=True, type=Path, nargs="+", help="NIfTI files or folders of them")
    parser.add_argument("--out", type=Path, default=Path("predictions"), help="output folder (default predictions)")
    parser.add_argument("--sw-batch-size", type=int, default=4, help="starting sliding-window batch (halved on OOM)")
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:

    from ..step.backoff import OutOfMemoryAtMinimum
    from ..step.checkpoint import CheckpointError
    from ..training.inference import infer
    from ..training.loop import pick_device

    try:
        written = infer(args.checkpoint, args.input, args.out, sw_batch_size=args.sw_batch_size,
                        overlap=args.overlap, device=pick_device(args.device))
    except (CheckpointError, FileNotFoundError) as exc:
        print(f"crashguard infer: {exc}", file=sys.stderr)
        return 2
    except OutOfMemoryAtMinimum as exc:
        print(f"crashguard infer: {exc}", file=sys.stderr)
        return 3
    for path in written:
        print(path)
    return 0
