"""One step of each integration with grad_clip_norm, SGD at lr 1 and no momentum, so the update IS the clipped
gradient: prints {integration: {"grad_norm": norm before clipping, "update_norm": norm of the weights' change}}.

usage: clipping_child.py RUNS_DIR CLIP
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from monai.engines import SupervisedTrainer
from tiny3d import LOSS, SyntheticVolumes, build_model

from crashguard.lightning import CrashGuardCallback
from crashguard.monai import CrashGuardHandler


def loader() -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(SyntheticVolumes(16), batch_size=4, shuffle=False)


def update_norm(before: list[torch.Tensor], model: torch.nn.Module) -> float:
    return float(torch.linalg.vector_norm(torch.stack([
        torch.linalg.vector_norm(p.detach() - b) for p, b in zip(model.parameters(), before, strict=True)])))


def monai_step(runs: str, clip: float) -> dict[str, float]:
    model = build_model()
    before = [p.detach().clone() for p in model.parameters()]
    handler = CrashGuardHandler(name="monai", runs_dir=runs, micro_batch=2, grad_clip_norm=clip)
    trainer = SupervisedTrainer(device=torch.device("cpu"), max_epochs=1, epoch_length=1, train_data_loader=loader(),
                                network=model, optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
                                loss_function=LOSS, iteration_update=handler.iteration, train_handlers=[handler])
    trainer.run()
    assert handler.run is not None and handler.run.last is not None and handler.run.last.grad_norm is not None
    return {"grad_norm": handler.run.last.grad_norm, "update_norm": update_norm(before, model)}


class Manual(pl.LightningModule):
    def __init__(self, guard: CrashGuardCallback) -> None:
        super().__init__()
        self.model, self.guard, self.automatic_optimization = build_model(), guard, False

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.guard.step(self, batch, lambda b: LOSS(self.model(b["image"]), b["label"]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.model.parameters(), lr=1.0)


def lightning_step(runs: str, clip: float) -> dict[str, float]:
    guard = CrashGuardCallback(name="lightning", runs_dir=runs, micro_batch=2, grad_clip_norm=clip)
    module = Manual(guard)
    before = [p.detach().clone() for p in module.model.parameters()]
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", devices=1, callbacks=[guard], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, loader())
    assert guard.run is not None and guard.run.last is not None and guard.run.last.grad_norm is not None
    return {"grad_norm": guard.run.last.grad_norm, "update_norm": update_norm(before, module.model)}


def main() -> int:
    runs, clip = sys.argv[1], float(sys.argv[2])
    torch.manual_seed(0)
    result = {"monai": monai_step(runs, clip), "lightning": lightning_step(runs, clip)}
    Path(runs, "clipping.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
