"""`crashguard bench-train`: guarded vs plain MONAI loop (steps/s), and steps lost to an injected OOM
(Crash Guard vs a plain loop vs accelerate's find_executable_batch_size). JSON on stdout, a summary on stderr."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..runs.files import json_text


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench-train", help="benchmark the guarded training loop")
    parser.add_argument("--roi", type=int, default=32, help="crop edge in voxels (default 32)")
    parser.add_argument("--steps", type=int, default=20, help="steps per throughput run (default 20)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of each loop (default 3)")
    parser.add_argument("--oom-steps", type=int, default=10, help="steps of each OOM run (default 10)")
    parser.add_argument("--oom-at", type=int, default=5, help="the step (1-based) at which memory gets tight")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--work-dir", type=Path, help="keep data and runs here instead of a temp folder")
    parser.add_argument("--out", type=Path, help="also write the JSON result to this file")
    parser.set_defaults(run=run)


def _fmt(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


def run(args: argparse.Namespace) -> int:
    from ..training.bench import run_benchmark

    result = run_benchmark(roi=args.roi, steps=args.steps, repeats=args.repeats, oom_steps=args.oom_steps,
                           oom_step=args.oom_at - 1, threads=args.threads, work_dir=args.work_dir)
    text = json_text(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    tp = result["throughput"]
    print(f"throughput: guarded/plain steps/s ratio {tp['ratio_median']:.3f} (median of per-pair ratios), "
          f"{tp['ratio_of_medians']:.3f} (ratio of medians); plain {_fmt(tp['plain_steps_per_s'])}, guarded "
          f"{_fmt(tp['guarded_steps_per_s'])} steps/s", file=sys.stderr)
    print(f"guard overhead: {tp['guard_overhead_ms_per_step']:.3f} ms per step -> ratio "
          f"{tp['ratio_from_overhead']:.4f} at the plain loop's median step time", file=sys.stderr)
    for row in result["oom"]:
        print(f"OOM at step {args.oom_at}: {row['loop']}: survived={row['survived']} steps_lost={row['steps_lost']} "
              f"steps_kept={row['optimizer_steps_done']} effective_batch_after={row['effective_batch_after']} "
              f"({row['note']})", file=sys.stderr)
    return 0
