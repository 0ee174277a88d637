"""`crashguard monitor`: a live terminal view of RAM, swap, the cgroup limit, GPUs and the heaviest processes."""

from __future__ import annotations

import argparse
import os
import sys
import time

from ..monitor.gpu import GPUMonitor
from ..monitor.host import MemoryMonitor
from ..monitor.snapshot import take_snapshot
from ..monitor.thresholds import Thresholds
from ..util.json_io import json_text
from .monitor_view import render

_CLEAR = "\033[H\033[2J"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("monitor", help="live memory view in the terminal (or JSONL with --json)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples (default 1)")
    parser.add_argument("--json", action="store_true", help="write one JSON object per sample (JSONL)")
    parser.add_argument("--once", action="store_true", help="print one sample and exit")
    parser.add_argument("--count", type=int, default=0, help="stop after this many samples (0 = until Ctrl-C)")
    parser.add_argument("--top", type=int, default=5, help="how many of the heaviest processes to list")
    parser.add_argument("--warning", type=float, default=0.80, help="warning level, fraction (default 0.80)")
    parser.add_argument("--critical", type=float, default=0.90, help="critical level, fraction (default 0.90)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.interval <= 0:
        print("crashguard monitor: --interval must be positive", file=sys.stderr)
        return 2
    try:
        memory = MemoryMonitor(warning=args.warning, critical=args.critical)
    except ValueError as exc:
        print(f"crashguard monitor: {exc}", file=sys.stderr)
        return 2
    gpus = GPUMonitor()
    gpu_thresholds = Thresholds(warning=args.warning, critical=args.critical)
    live_view = not args.json and not args.once and sys.stdout.isatty()
    count = 1 if args.once else args.count
    taken = 0
    try:
        while True:
            started = time.monotonic()
            snapshot = take_snapshot(memory, gpus, top=args.top)
            if args.json:
                print(json_text(snapshot.to_dict()), flush=True)
            else:
                screen = render(snapshot, gpu_thresholds, colour=sys.stdout.isatty())
                print((_CLEAR if live_view else "") + screen, flush=True)
            taken += 1
            if count and taken >= count:
                return 0
            time.sleep(max(0.0, args.interval - (time.monotonic() - started)))
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how a live view ends
    except BrokenPipeError:
        # e.g. `crashguard monitor --json | head -1`: silence the flush at exit too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        gpus.close()
