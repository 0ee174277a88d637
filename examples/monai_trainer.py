"""Crash Guard in a MONAI `SupervisedTrainer` (PyTorch-Ignite): one handler, and its guarded iteration.

    python examples/monai_trainer.py --runs-dir runs --epochs 2

`iteration_update=handler.iteration` gives the trainer the zero-loss out-of-memory back-off (the batch is split into
micro-batches, the effective batch kept); `train_handlers=[handler]` registers the run, answers cleanup and
checkpoint-and-stop, and writes checkpoints that MONAI's CheckpointLoader reads: every `--checkpoint-every` steps
and every 10 minutes, in the background. `--resume` (what the crash prompt's Resume adds) continues from the newest
checkpoint; the loader's `ResumableSampler` puts the data position in every checkpoint, so the resumed run sees
exactly the samples, in the order, of an uninterrupted one (Ignite alone would restart the interrupted epoch's data).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer
from tiny3d import LOSS, SyntheticVolumes, build_model

from crashguard.monai import CrashGuardHandler, ResumableSampler


def sample_ids(batch: Any) -> list[int]:
    """The samples of a step (MONAI decollates the batch into one dict per sample after the model ran)."""
    if isinstance(batch, list):
        return [int(item["id"]) for item in batch]
    return [int(i) for i in batch["id"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--name", default="monai-trainer")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--size", type=int, default=48, help="edge of the synthetic volumes, in voxels")
    parser.add_argument("--micro-batch", type=int, default=None)
    parser.add_argument("--checkpoint-every", type=int, default=None, metavar="N")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)

    model = build_model()
    dataset = SyntheticVolumes(args.size)
    # The sampler fixes each epoch's order and holds the place in it; the loader's own generator keeps the seed it
    # draws for its workers each epoch off the global RNG (whose state the checkpoint restores: dropout).
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, sampler=ResumableSampler(dataset, seed=0),
                                         generator=torch.Generator().manual_seed(1))
    handler = CrashGuardHandler(name=args.name, runs_dir=args.runs_dir, micro_batch=args.micro_batch,
                                resume=args.resume, checkpoint_every_steps=args.checkpoint_every)
    trainer = SupervisedTrainer(device=torch.device("cpu"), max_epochs=args.epochs, train_data_loader=loader,
                                network=model, optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3),
                                loss_function=LOSS, iteration_update=handler.iteration, train_handlers=[handler])
    log = Path(args.runs_dir, args.name, "steps.jsonl")

    @trainer.on(Events.ITERATION_COMPLETED)
    def log_step(engine: SupervisedTrainer) -> None:
        last = handler.run.last if handler.run else None
        with log.open("a") as out:
            out.write(json.dumps({"step": engine.state.iteration, "loss": last.loss if last else None,
                                  "micro_batch": last.micro_batch if last else None,
                                  "accumulation": last.accumulation if last else None,
                                  "samples": last.samples if last else None,
                                  "ids": sample_ids(engine.state.batch)}) + "\n")

    trainer.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
