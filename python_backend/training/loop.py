"""The guarded training loop: MONAI model + DiceLoss, OOM back-off that loses no step, checkpoints, control.

One optimizer step always sees `effective_batch` samples. The step's samples are split into micro-batches
whose losses are weighted by their share of the step, so gradients do not depend on the split; an OOM halves
the micro-batch (doubling the accumulation) and the *same* step is redone from its first micro-batch.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from monai.losses import DiceLoss
from monai.metrics import DiceMetric
from monai.utils import set_determinism
from tqdm import tqdm

from ..guard.cleanup import emergency_cleanup
from ..guard.failures import Failure, describe_failure, is_oom
from ..monitor.host import read_ram
from ..runs.hook import RunHook
from .backoff import BatchPlan, OutOfMemoryAtMinimum
from .checkpoint import CheckpointError, restore_rng, rng_state, save_checkpoint
from .config import TrainingConfig
from .data import DecathlonData
from .metrics import MetricsLog
from .model import build_model
from .sliding import WindowPlan, guarded_sliding_window
from .transforms import REGIONS

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class Outcome:
    state: str  # a RunState value
    exit_code: int
    message: str
    checkpoint: Path | None


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def check_compatible(config: TrainingConfig, state: dict[str, Any]) -> None:
    """A checkpoint resumes only the run it came from: same model, same effective batch."""
    saved_model = state.get("config", {}).get("model")
    wanted = config.model.model_dump(mode="json")
    if saved_model != wanted:
        raise CheckpointError(f"checkpoint is for model {saved_model}, the config has {wanted}")
    if state.get("effective_batch") != config.train.effective_batch:
        raise CheckpointError(f"checkpoint has effective batch {state.get('effective_batch')}, the config "
                              f"{config.train.effective_batch}: resuming would change the run")


class Trainer:
    def __init__(self, config: TrainingConfig, data: DecathlonData, hook: RunHook, metrics: MetricsLog,
                 device: torch.device, progress: bool = True) -> None:
        self.config = config
        self.data = data
        self.hook = hook
        self.metrics = metrics
        self.device = device
        self.progress = progress
        self.checkpoint_dir = hook.run_dir / "checkpoints"
        train = config.train
        set_determinism(seed=train.seed)
        self.model = build_model(config.model).to(device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=train.learning_rate,
                                           weight_decay=train.weight_decay)
        self.amp = train.amp and device.type == "cuda"  # CPU autocast is slower than fp32 for these convs
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp)
        self.loss_fn = DiceLoss(sigmoid=True, smooth_nr=0.0, smooth_dr=1e-5, squared_pred=True)
        self.plan = BatchPlan(effective=train.effective_batch, micro=train.micro_batch)
        self.window = WindowPlan(sw_batch_size=train.sw_batch_size, overlap=train.sw_overlap)
        self.step = 0
        self.last_checkpoint: Path | None = None
        self.validated_at = -1
        self._warned_ram = 0.0
        steps = config.train.epochs * data.steps_per_epoch
        self.total_steps = min(steps, train.max_steps) if train.max_steps else steps

    # -- state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(), "step": self.step, "epoch": self.step // self.data.steps_per_epoch,
            "batch_in_epoch": self.step % self.data.steps_per_epoch, "micro_batch": self.plan.micro,
            "accumulation": self.plan.accumulation, "effective_batch": self.plan.effective,
            "sw_batch_size": self.window.sw_batch_size, "validated_at": self.validated_at, "rng": rng_state(),
            "config": self.config.model_dump(mode="json", by_alias=True),
            "regions": {k: list(v) for k, v in self.data.regions.items()},
        }

    def load_state(self, state: dict[str, Any]) -> None:
        check_compatible(self.config, state)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.plan.micro = min(int(state["micro_batch"]), self.plan.micro)  # a learned limit sticks
        self.window.sw_batch_size = min(int(state["sw_batch_size"]), self.window.sw_batch_size)
        self.validated_at = int(state.get("validated_at", -1))
        restore_rng(state["rng"])

    def save(self) -> Path:
        path = save_checkpoint(self.checkpoint_dir, self.state_dict(), self.step, self.config.checkpoint.keep)
        self.last_checkpoint = path
        self.metrics.write("event", step=self.step, event="checkpoint", path=str(path))
        self.hook.event(f"checkpoint at step {self.step}", checkpoint=str(path))
        return path

    def event(self, kind: str, message: str, **fields: Any) -> None:
        self.metrics.write("event", step=self.step, event=kind, message=message, **fields)
        self.hook.event(message)

    # -- one optimizer step -----------------------------------------------------------------------
    def _accumulate(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        total = 0.0
        for chunk in self.plan.chunks():
            x = images[chunk].to(self.device, non_blocking=True)
            y = labels[chunk].to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                loss = self.loss_fn(self.model(x), y) * (x.shape[0] / self.plan.effective)
            self.scaler.scale(loss).backward()
            total += float(loss.detach())
        return total

    def train_step(self, batch: dict[str, torch.Tensor]) -> float:
        images, labels = batch["image"], batch["label"]
        if images.shape[0] != self.plan.effective:
            raise RuntimeError(f"a step got {images.shape[0]} samples, expected {self.plan.effective}")
        while True:
            failure: Failure | None = None
            try:
                loss = self._accumulate(images, labels)
            except Exception as exc:
                if not is_oom(exc):
                    raise
                failure = describe_failure(exc)
            if failure is None:
                break
            # Out of the except block: the failed attempt's activations are unreachable now.
            self.optimizer.zero_grad(set_to_none=True)
            emergency_cleanup()
            old = self.plan.micro
            if not self.plan.halve():
                raise OutOfMemoryAtMinimum("training step", failure)
            self.event("oom_backoff", f"{failure.kind.value} at step {self.step + 1}: micro-batch {old}->"
                       f"{self.plan.micro}, accumulation {self.plan.accumulation}, effective batch "
                       f"{self.plan.effective} kept; retrying the same step",
                       failure=failure.describe(), micro_batch=self.plan.micro, accumulation=self.plan.accumulation)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return loss

    # -- memory and control between steps -----------------------------------------------------------
    def _watch_memory(self) -> float:
        mem = self.config.memory
        ram = read_ram()
        if ram.fraction >= mem.ram_critical:
            report = emergency_cleanup()
            ram = read_ram()
            if ram.fraction >= mem.ram_critical and self.plan.micro > 1:
                old = self.plan.micro
                self.plan.halve()
                self.event("ram_backoff", f"RAM at {ram.percent:.0f}% (critical {mem.ram_critical:.0%}) after "
                           f"cleanup (freed {report.rss_freed / 2**20:.0f} MiB): micro-batch {old}->{self.plan.micro}")
        elif ram.fraction >= mem.ram_warning and time.monotonic() - self._warned_ram > 60:
            self._warned_ram = time.monotonic()
            self.event("ram_warning", f"RAM at {ram.percent:.0f}% (warning {mem.ram_warning:.0%})")
        return ram.percent

    # -- validation ---------------------------------------------------------------------------------
    def validate(self) -> dict[str, float | None]:
        self.model.eval()
        metric = DiceMetric(include_background=True, reduction="mean_batch")
        with torch.no_grad():
            for batch in self.data.val_loader:
                image = batch["image"].to(self.device)
                logits = guarded_sliding_window(image, self.model, self.config.train.roi_size, self.window,
                                                self.amp, lambda m: self.event("sw_backoff", m))
                metric(y_pred=(torch.sigmoid(logits) > 0.5).float(), y=batch["label"].to(self.device))
        per_region = metric.aggregate().tolist()
        metric.reset()
        self.model.train()
        dice: dict[str, float | None] = {r: (None if math.isnan(v) else round(v, 4))
                                         for r, v in zip(REGIONS, per_region, strict=True)}
        known = [v for v in dice.values() if v is not None]
        mean = round(sum(known) / len(known), 4) if known else None
        self.validated_at = self.step
        self.metrics.write("val", step=self.step, epoch=max(0, self.step - 1) // self.data.steps_per_epoch,
                           dice_mean=mean, **{f"dice_{k.lower()}": v for k, v in dice.items()})
        log.info("validation at step %d: Dice mean %s (TC %s, WT %s, ET %s)", self.step, mean, *dice.values())
        return {"mean": mean, **dice}

    # -- the run ------------------------------------------------------------------------------------
    def fit(self) -> Outcome:
        if self.step >= self.total_steps:
            return Outcome("finished", 0, f"already complete at step {self.step}", self.last_checkpoint)
        spe = self.data.steps_per_epoch
        if self.step == 0 and self.config.train.val_at_start:
            self.validate()
        bar = tqdm(total=self.total_steps, initial=self.step, file=sys.stderr, disable=not self.progress,
                   desc=self.hook.status.name, unit="step", dynamic_ncols=True)
        try:
            while self.step < self.total_steps:
                epoch = self.step // spe
                self.data.start_epoch(epoch, self.step % spe)
                for batch in self.data.train_loader:
                    started = time.perf_counter()
                    loss = self.train_step(batch)
                    used = (self.plan.micro, self.plan.accumulation)  # before any pre-emptive halving
                    self.step += 1
                    ram_percent = self._watch_memory()
                    seconds = time.perf_counter() - started
                    self.metrics.write("step", step=self.step, epoch=epoch, loss=round(loss, 6),
                                       micro_batch=used[0], accumulation=used[1],
                                       ram_percent=ram_percent, seconds=round(seconds, 4))
                    peak_vram = torch.cuda.max_memory_reserved() if self.device.type == "cuda" else None
                    self.hook.step_boundary(step=self.step, epoch=epoch, loss=loss, micro_batch=self.plan.micro,
                                            accumulation=self.plan.accumulation, peak_vram=peak_vram)
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.3f}", mb=self.plan.micro, acc=self.plan.accumulation,
                                    ram=f"{ram_percent:.0f}%", refresh=False)
                    if self.hook.stop_requested:
                        path = self.save()
                        return Outcome("stopped", 0, f"stopped on request at step {self.step}", path)
                    if self.step % self.config.checkpoint.every_steps == 0:
                        self.save()
                    if self.step >= self.total_steps:
                        break
                if self.step % spe == 0 and (self.step // spe) % self.config.train.val_every_epochs == 0:
                    self.validate()
            if self.validated_at != self.step:
                self.validate()
            path = self.last_checkpoint if self.last_checkpoint and self._saved_now() else self.save()
            return Outcome("finished", 0, f"finished at step {self.step}", path)
        finally:
            bar.close()

    def _saved_now(self) -> bool:
        return self.last_checkpoint is not None and self.last_checkpoint.name.endswith(f"{self.step:08d}.pt")
