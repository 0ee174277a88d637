"""Crash Guard in a MONAI `SupervisedTrainer` (PyTorch-Ignite): one handler, and its guarded iteration.

    python examples/monai_trainer.py --runs-dir runs --epochs 2

`iteration_update=handler.iteration` gives the trainer the zero-loss out-of-memory back-off (the batch is split into
micro-batches, the effective batch kept); `train_handlers=[handler]` registers the run, answers cleanup and
checkpoint-and-stop, and writes checkpoints that MONAI's CheckpointLoader reads. `--resume` (what the crash prompt's
Resume adds) continues from the newest checkpoint.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer
from tiny3d import LOSS, SyntheticVolumes, build_model

from crashguard.monai import CrashGuardHandler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--name", default="monai-trainer")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--size", type=int, default=48, help="edge of the synthetic volumes, in voxels")
    parser.add_argument("--micro-batch", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)

    model = build_model()
    loader = torch.utils.data.DataLoader(SyntheticVolumes(args.size), batch_size=4, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    handler = CrashGuardHandler(name=args.name, runs_dir=args.runs_dir, micro_batch=args.micro_batch,
                                resume=args.resume)
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
                                  "samples": last.samples if last else None}) + "\n")

    trainer.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
