"""`python -m benchmarks.train_loops`: guarded vs plain MONAI loop vs accelerate's gradient-accumulation loop
(steps/s) on one named device, and steps lost to an injected OOM (Crash Guard vs a plain loop vs accelerate's
find_executable_batch_size + accumulate), counted from each run. JSON on stdout, a summary on stderr."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from crashguard.util.json_io import json_text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train_loops",
                                     description="benchmark the guarded training loop")
    parser.add_argument("--roi", type=int, default=32, help="crop edge in voxels (default 32)")
    parser.add_argument("--steps", type=int, default=20, help="steps per throughput run (default 20)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of each loop (default 3)")
    parser.add_argument("--oom-steps", type=int, default=10, help="steps of each OOM run (default 10)")
    parser.add_argument("--oom-at", type=int, default=5, help="the step (1-based) at which memory gets tight")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu",
                        help="where every loop runs (default cpu; auto: cuda if there is one)")
    parser.add_argument("--plain-checkpoint-every", type=int, default=None, metavar="N",
                        help="let the plain loop save model + optimizer every N steps (default: never, as the "
                             "tutorial loop)")
    parser.add_argument("--work-dir", type=Path, help="keep data and runs here instead of a temp folder")
    parser.add_argument("--out", type=Path, help="also write the JSON result to this file")
    return parser


def _fmt(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


def run(args: argparse.Namespace) -> int:
    from benchmarks.train_loops_bench import run_benchmark

    try:
        result = run_benchmark(roi=args.roi, steps=args.steps, repeats=args.repeats, oom_steps=args.oom_steps,
                               oom_step=args.oom_at - 1, threads=args.threads, work_dir=args.work_dir,
                               device=args.device, plain_checkpoint_every=args.plain_checkpoint_every)
    except ValueError as exc:  # no CUDA for --device cuda, too few steps to time: one line, nothing run
        print(f"bench-train: {exc}", file=sys.stderr)
        return 2
    text = json_text(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    tp, setup = result["throughput"], result["setup"]
    print(f"device {setup['device']}, torch {setup['torch']}, accelerate {setup['accelerate']}, "
          f"{setup['torch_threads']} torch thread(s), {setup['precision']}", file=sys.stderr)
    print(f"throughput: guarded/plain steps/s ratio {tp['ratio_median']:.3f} (median of per-pair ratios), "
          f"{tp['ratio_of_medians']:.3f} (ratio of medians); plain {_fmt(tp['plain_steps_per_s'])}, guarded "
          f"{_fmt(tp['guarded_steps_per_s'])}, accelerate {_fmt(tp['accelerate_steps_per_s'])} steps/s; "
          f"accelerate/plain {tp['accelerate_ratio_median']:.3f}, guarded/accelerate "
          f"{tp['guarded_vs_accelerate_ratio_median']:.3f}", file=sys.stderr)
    print(f"guard overhead: {tp['guard_overhead_ms_per_step']:.3f} ms per step -> ratio "
          f"{tp['ratio_from_overhead']:.4f} at the plain loop's median step time", file=sys.stderr)
    for row in result["oom"]:
        print(f"OOM at step {args.oom_at}: {row['loop']}: survived={row['survived']} "
              f"updates_applied={row['updates_applied']} steps_kept={row['steps_kept']}/{row['target_steps']} "
              f"steps_lost={row['steps_lost']} samples_forwarded={row['samples_forwarded']} "
              f"effective_batch_after={row['effective_batch_after']} retries={row['retries']} ({row['note']})",
              file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
