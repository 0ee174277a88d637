"""Crash Guard in a Lightning fit: the callback, and its guarded step under manual optimization.

    python examples/lightning_module.py --runs-dir runs --epochs 2

`callbacks=[guard]` registers the run, answers cleanup and checkpoint-and-stop, and checkpoints through
`trainer.save_checkpoint`. The zero-loss out-of-memory back-off needs manual optimization: `training_step` hands
the batch to `guard.step`, which splits it into micro-batches, runs `manual_backward` and the optimizer step, and
redoes the same step with smaller micro-batches after an OOM. `--resume` continues from the newest checkpoint.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from tiny3d import LOSS, SyntheticVolumes, build_model

from crashguard.lightning import CrashGuardCallback


class TinySegModule(pl.LightningModule):
    def __init__(self, guard: CrashGuardCallback, log_path: Path) -> None:
        super().__init__()
        self.model = build_model()
        self.guard = guard
        self.log_path = log_path
        self.automatic_optimization = False  # the guarded step runs backward and the optimizer step

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.guard.step(self, batch, lambda b: LOSS(self.model(b["image"]), b["label"]))
        last: Any = self.guard.run.last if self.guard.run else None
        with self.log_path.open("a") as out:
            out.write(json.dumps({"step": self.trainer.global_step, "loss": float(loss),
                                  "micro_batch": last.micro_batch, "accumulation": last.accumulation,
                                  "samples": last.samples}) + "\n")
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.model.parameters(), lr=1e-3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--name", default="lightning-module")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--size", type=int, default=48, help="edge of the synthetic volumes, in voxels")
    parser.add_argument("--micro-batch", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)

    guard = CrashGuardCallback(name=args.name, runs_dir=args.runs_dir, micro_batch=args.micro_batch)
    loader = torch.utils.data.DataLoader(SyntheticVolumes(args.size), batch_size=4, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    trainer = pl.Trainer(max_epochs=args.epochs, accelerator="cpu", devices=1, callbacks=[guard], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    module = TinySegModule(guard, Path(args.runs_dir, args.name, "steps.jsonl"))
    trainer.fit(module, loader, ckpt_path=guard.newest_checkpoint() if args.resume else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
