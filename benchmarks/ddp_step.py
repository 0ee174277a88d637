"""Per-step cost of Crash Guard's coordinated DDP step against a plain DDP step, under torchrun.

usage: torchrun --nproc_per_node 2 benchmarks/ddp_step.py --config CONFIG [--steps 20] [--repeats 5]

Both schemes run the same model, batches and micro-batch split in the same processes, interleaved:
- plain: micro-batches under no_sync() but the last, whose backward all-reduces the gradients (DDP's overlap);
- guarded: Trainer.train_step (every micro-batch under no_sync, the OOM-flag all-reduce, the bucketed gradient
  all-reduce after the backward) plus the step-boundary agreement (stop / RAM back-off flags).
Rank 0 prints one JSON line: steps/s per repeat for each scheme and the median ratio guarded / plain.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from itertools import cycle
from pathlib import Path

import torch
import torch.distributed as dist

from crashguard.training.config import load_config
from crashguard.training.run import RunPlace, prepare


def plain_step(trainer, batch) -> None:  # type: ignore[no-untyped-def]
    images, labels = batch["image"], batch["label"]
    chunks = trainer.plan.chunks()
    for i, chunk in enumerate(chunks):
        sync = i == len(chunks) - 1
        with contextlib.nullcontext() if sync else trainer.model.no_sync():
            loss = trainer.loss_fn(trainer.model(images[chunk]), labels[chunk]) * (
                (chunk.stop - chunk.start) / trainer.config.train.effective_batch)
            loss.backward()
    trainer.optimizer.step()
    trainer.optimizer.zero_grad(set_to_none=True)


def guarded_step(trainer, batch) -> None:  # type: ignore[no-untyped-def]
    trainer.train_step(batch)
    trainer.coord.agree(False, False)


def rate(step, trainer, batches, steps: int) -> float:  # type: ignore[no-untyped-def]
    dist.barrier()
    started = time.perf_counter()
    for _ in range(steps):
        step(trainer, next(batches))
    dist.barrier()
    return steps / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    config = load_config(args.config)
    with tempfile.TemporaryDirectory() as runs:
        trainer, _ = prepare(config, RunPlace(Path(runs), "bench"), resume="never", progress=False)
        trainer.data.start_epoch(0)
        batches = cycle(list(trainer.data.train_loader)[:4])
        for step in (plain_step, guarded_step):  # warm-up
            rate(step, trainer, batches, 2)
        plain, guarded = [], []
        for _ in range(args.repeats):
            plain.append(rate(plain_step, trainer, batches, args.steps))
            guarded.append(rate(guarded_step, trainer, batches, args.steps))
        if trainer.coord.is_main:
            print(json.dumps({
                "world_size": trainer.coord.world_size, "threads": torch.get_num_threads(),
                "micro_batch": trainer.plan.micro, "accumulation": trainer.plan.accumulation,
                "plain_steps_per_s": [round(r, 3) for r in plain],
                "guarded_steps_per_s": [round(r, 3) for r in guarded],
                "ratio_median": round(statistics.median(g / p for g, p in zip(guarded, plain, strict=True)), 4),
            }))
        trainer.coord.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
