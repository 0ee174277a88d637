"""Crash Guard around a plain PyTorch loop (the same in a notebook cell).

    python examples/plain_loop.py --runs-dir runs --steps 8

The run registers (the VS Code status bar and report list it), answers Emergency Cleanup, checkpoints and stops when
asked (at once when memory is critical), backs off an out-of-memory without losing a sample, and resumes from its
newest checkpoint when started again (`--resume` is what the crash prompt's Resume adds).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from tiny3d import LOSS, batch_for, build_model

import crashguard


def log_step(path: Path, step: int, loss: float, last: Any) -> None:
    with path.open("a") as out:
        out.write(json.dumps({"step": step, "loss": loss, "micro_batch": last.micro_batch if last else None,
                              "accumulation": last.accumulation if last else None,
                              "samples": last.samples if last else None}) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--name", default="plain-loop")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=48, help="edge of the synthetic volumes, in voxels")
    parser.add_argument("--micro-batch", type=int, default=None, help="start smaller than the batch (default: all)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    args = parser.parse_args(argv)

    model = build_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with crashguard.guarded_run(args.name, model=model, optimizer=optimizer, runs_dir=args.runs_dir,
                                micro_batch=args.micro_batch, resume_args=["--resume"]) as run:
        start = run.resume() if args.resume else 0  # model, optimizer, RNG and step of the newest checkpoint
        for step in range(start, args.steps):
            loss = run.step(batch_for(step, size=args.size), lambda b: LOSS(model(b["image"]), b["label"]))
            log_step(Path(args.runs_dir, args.name, "steps.jsonl"), step + 1, loss, run.last)
            if run.should_stop:  # a checkpoint-and-stop: the checkpoint is written as the block ends
                break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
