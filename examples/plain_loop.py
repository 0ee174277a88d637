"""Crash Guard around a plain PyTorch loop (the same in a notebook cell).

    python examples/plain_loop.py --runs-dir runs --steps 8

The run registers (the VS Code status bar and report list it), answers Emergency Cleanup, checkpoints every
`--checkpoint-every` steps and every 10 minutes in the background, checkpoints and stops when asked (at once when
memory is critical), backs off an out-of-memory without losing a sample, and resumes from its newest checkpoint when
started again (`--resume` is what the crash prompt's Resume adds). The data loader is torchdata's
`StatefulDataLoader`, given to the run as `data=`: its position is in every checkpoint, so a resumed run sees exactly
the samples, in the order, of an uninterrupted one (the shuffle of later epochs included).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from tiny3d import LOSS, SyntheticVolumes, build_model
from torchdata.stateful_dataloader import StatefulDataLoader
from torchdata.stateful_dataloader.sampler import RandomSampler

import crashguard


def log_step(path: Path, step: int, loss: float, last: Any, ids: list[int]) -> None:
    with path.open("a") as out:
        out.write(json.dumps({"step": step, "loss": loss, "micro_batch": last.micro_batch if last else None,
                              "accumulation": last.accumulation if last else None,
                              "samples": last.samples if last else None, "ids": ids}) + "\n")


def shuffled_loader(dataset: torch.utils.data.Dataset[Any], batch_size: int, seed: int) -> StatefulDataLoader:
    """A shuffling loader whose state is the whole data position: the sampler has its own generator (torchdata's
    state restores it), apart from the loader's, which also seeds its workers each epoch and is not restored."""
    sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))  # type: ignore[arg-type]
    return StatefulDataLoader(dataset, batch_size=batch_size, sampler=sampler,
                              generator=torch.Generator().manual_seed(seed + 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--name", default="plain-loop")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=48, help="edge of the synthetic volumes, in voxels")
    parser.add_argument("--micro-batch", type=int, default=None, help="start smaller than the batch (default: all)")
    parser.add_argument("--checkpoint-every", type=int, default=None, metavar="N", help="a checkpoint every N steps "
                        "(besides the one every 10 minutes)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    args = parser.parse_args(argv)

    model = build_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = shuffled_loader(SyntheticVolumes(args.size), batch_size=4, seed=0)
    log = Path(args.runs_dir, args.name, "steps.jsonl")
    with crashguard.guarded_run(args.name, model=model, optimizer=optimizer, runs_dir=args.runs_dir, data=loader,
                                micro_batch=args.micro_batch, checkpoint_every_steps=args.checkpoint_every,
                                resume_args=["--resume"]) as run:
        if args.resume:
            run.resume()  # model, optimizer, RNG, step, epoch and the loader's place in its epoch
        while run.completed_steps < args.steps and not run.should_stop:
            for batch in loader:  # after a resume: the rest of the interrupted epoch first
                loss = run.step(batch, lambda b: LOSS(model(b["image"]), b["label"]))
                log_step(log, run.completed_steps, loss, run.last, batch["id"].tolist())
                if run.should_stop or run.completed_steps >= args.steps:
                    break  # a checkpoint-and-stop: the checkpoint is written as the block ends
            else:
                run.epoch += 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
