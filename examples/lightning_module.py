"""Crash Guard in a Lightning fit: the callback, and its guarded step under manual optimization.

    python examples/lightning_module.py --runs-dir runs --epochs 2 [--automatic]

`callbacks=[guard]` registers the run, answers cleanup and checkpoint-and-stop, and checkpoints Lightning's own
checkpoint every `--checkpoint-every` steps and every 10 minutes, in the background. The zero-loss out-of-memory
back-off needs manual optimization: `training_step` hands the batch to `guard.step`, which splits it into
micro-batches, runs `manual_backward` and the optimizer step, and redoes the same step with smaller micro-batches
after an OOM (`--automatic` trains the same module under Lightning's automatic optimization: guarded and
checkpointed, without the back-off). `--resume` continues from the newest checkpoint, loaded weights-only; the
loader is torchdata's `StatefulDataLoader`, whose position Lightning keeps in the checkpoint, so the resumed fit
sees exactly the samples, in the order, of an uninterrupted one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from tiny3d import LOSS, SyntheticVolumes, build_model
from torchdata.stateful_dataloader import StatefulDataLoader
from torchdata.stateful_dataloader.sampler import RandomSampler

from crashguard.lightning import CrashGuardCallback


class TinySegModule(pl.LightningModule):
    def __init__(self, guard: CrashGuardCallback, log_path: Path, automatic: bool = False) -> None:
        super().__init__()
        self.model = build_model()
        self.guard = guard
        self.log_path = log_path
        self.automatic_optimization = automatic  # manual: the guarded step runs backward and the optimizer step

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.automatic_optimization:
            loss = LOSS(self.model(batch["image"]), batch["label"])
            self.log_step(self.trainer.global_step + 1, float(loss.detach()), None, batch)  # Lightning steps next
            return loss
        loss = self.guard.step(self, batch, lambda b: LOSS(self.model(b["image"]), b["label"]))
        self.log_step(self.trainer.global_step, float(loss), self.guard.run.last if self.guard.run else None, batch)
        return loss

    def log_step(self, step: int, loss: float, last: Any, batch: dict[str, torch.Tensor]) -> None:
        with self.log_path.open("a") as out:
            out.write(json.dumps({"step": step, "loss": loss, "micro_batch": last.micro_batch if last else None,
                                  "accumulation": last.accumulation if last else None,
                                  "samples": last.samples if last else None, "ids": batch["id"].tolist()}) + "\n")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.model.parameters(), lr=1e-3)


def shuffled_loader(dataset: torch.utils.data.Dataset[Any], batch_size: int, seed: int) -> StatefulDataLoader:
    """A shuffling loader whose state is the whole data position: the sampler has its own generator (torchdata's
    state restores it), apart from the loader's, which also seeds its workers each epoch and is not restored."""
    sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))  # type: ignore[arg-type]
    return StatefulDataLoader(dataset, batch_size=batch_size, sampler=sampler,
                              generator=torch.Generator().manual_seed(seed + 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--name", default="lightning-module")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--size", type=int, default=48, help="edge of the synthetic volumes, in voxels")
    parser.add_argument("--micro-batch", type=int, default=None)
    parser.add_argument("--checkpoint-every", type=int, default=None, metavar="N")
    parser.add_argument("--automatic", action="store_true", help="Lightning's automatic optimization (no back-off)")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)

    guard = CrashGuardCallback(name=args.name, runs_dir=args.runs_dir, micro_batch=args.micro_batch,
                               checkpoint_every_steps=args.checkpoint_every)
    loader = shuffled_loader(SyntheticVolumes(args.size), batch_size=4, seed=0)
    trainer = pl.Trainer(max_epochs=args.epochs, accelerator="cpu", devices=1, callbacks=[guard], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    module = TinySegModule(guard, Path(args.runs_dir, args.name, "steps.jsonl"), automatic=args.automatic)
    trainer.fit(module, loader, ckpt_path=guard.newest_checkpoint() if args.resume else None, weights_only=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
