"""The guarded training loop: MONAI model + loss.py, OOM back-off that loses no step, checkpoints, control.

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
from monai.utils import set_determinism
from tqdm import tqdm

from ..guard.cleanup import emergency_cleanup
from ..guard.failures import Failure, FailureKind, describe_failure, is_oom
from ..guard.high_mark import HighMarkAction, HighMarkWatch
from ..monitor.host import read_ram
from ..runs.hook import RunHook
from .backoff import EXIT_OOM, BatchPlan, OutOfMemoryAtMinimum
from .checkpoint import CheckpointError, checkpoint_name, restore_rng, rng_state, save_checkpoint
from .config import TrainingConfig
from .data import DecathlonData
from .distributed import Coordinator, weights_digest
from .loss import build_loss
from .metrics import MetricsLog
from .model import build_model
from .sliding import WindowPlan, guarded_sliding_window
from .transforms import REGIONS
from .validation import guarded_region_dice

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
                 device: torch.device, progress: bool = True, coord: Coordinator | None = None) -> None:
        self.coord = coord or Coordinator()  # single process unless run.prepare found torchrun
        self.config = config
        self.data = data
        self.hook = hook
        self.metrics = metrics
        self.device = device
        self.progress = progress
        self.checkpoint_dir = hook.run_dir / "checkpoints"
        train = config.train
        set_determinism(seed=train.seed)
        self.net = build_model(config.model).to(device)  # the model itself (checkpoints, validation)
        self.model = self.coord.wrap(self.net, device)  # DDP under torchrun, else the same module
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=train.learning_rate,
                                           weight_decay=train.weight_decay)
        self.amp = train.amp and device.type == "cuda"  # CPU autocast is slower than fp32 for these convs
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp)
        self.loss_fn = build_loss(train.loss)
        # Under torchrun the plan is this rank's share of the global batch; every rank keeps the same plan.
        share = train.effective_batch // self.coord.world_size
        self.plan = BatchPlan(effective=share, micro=min(train.micro_batch, share))
        self.window = WindowPlan(sw_batch_size=train.sw_batch_size, overlap=train.sw_overlap)
        self.step = 0
        self.last_checkpoint: Path | None = None
        self.validated_at = -1
        self._warned_ram = 0.0
        self.high_mark: HighMarkWatch | None = None  # set when the run has a memory cgroup with a high mark
        steps = config.train.epochs * data.steps_per_epoch
        self.total_steps = min(steps, train.max_steps) if train.max_steps else steps

    # -- state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT, "model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(), "step": self.step, "epoch": self.step // self.data.steps_per_epoch,
            "batch_in_epoch": self.step % self.data.steps_per_epoch, "micro_batch": self.plan.micro,
            "accumulation": self.plan.accumulation, "effective_batch": self.config.train.effective_batch,
            "world_size": self.coord.world_size,
            "sw_batch_size": self.window.sw_batch_size, "validated_at": self.validated_at, "rng": rng_state(),
            "config": self.config.model_dump(mode="json", by_alias=True),
            "regions": {k: list(v) for k, v in self.data.regions.items()},
        }

    def load_state(self, state: dict[str, Any]) -> None:
        check_compatible(self.config, state)
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.plan.micro = min(int(state["micro_batch"]), self.plan.micro)  # a learned limit sticks
        self.window.sw_batch_size = min(int(state["sw_batch_size"]), self.window.sw_batch_size)
        self.validated_at = int(state.get("validated_at", -1))
        restore_rng(state["rng"])

    def save(self, coordinated: bool = True) -> Path:
        """Rank 0 writes the checkpoint; under torchrun every rank then reports the weights' digest (which also
        waits for the write). `coordinated=False`: rank 0 alone, when the other ranks are gone."""
        path = self.checkpoint_dir / checkpoint_name(self.step)
        if self.coord.is_main:
            path = save_checkpoint(self.checkpoint_dir, self.state_dict(), self.step, self.config.checkpoint.keep)
        extra: dict[str, Any] = {}
        if self.coord.distributed and coordinated:
            digests = self.coord.gather(weights_digest(self.net))
            extra["weights_sha256"] = digests
            if len(set(digests)) > 1:  # cannot happen while the all-reduce works; say so loudly if it does
                log.error("ranks hold different weights at step %d: %s", self.step, digests)
                self.metrics.write("event", step=self.step, event="ranks_diverged", weights_sha256=digests)
        self.last_checkpoint = path
        self.metrics.write("event", step=self.step, event="checkpoint", path=str(path), **extra)
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
                # Weighted by the share of the *global* batch: the ranks' gradients then sum to the step's.
                loss = self.loss_fn(self.model(x), y) * (x.shape[0] / self.config.train.effective_batch)
            self.scaler.scale(loss).backward()
            total += float(loss.detach())
        return total

    def train_step(self, batch: dict[str, torch.Tensor]) -> float:
        images, labels = batch["image"], batch["label"]
        if images.shape[0] != self.plan.effective:
            raise RuntimeError(f"a step got {images.shape[0]} samples, expected {self.plan.effective}")
        while True:
            failure: Failure | None = None
            loss = 0.0
            try:
                # Under DDP no micro-batch synchronises gradients: an OOM here leaves no rank in a collective.
                with self.coord.no_sync(self.model):
                    loss = self._accumulate(images, labels)
            except Exception as exc:
                if not is_oom(exc):
                    raise
                failure = describe_failure(exc)
            # Every rank learns who failed before any gradient leaves a rank (one small all-reduce per step).
            failed_ranks, loss = self.coord.step_outcome(failure is not None, loss)
            if not failed_ranks:
                break
            # Out of the except block: the failed attempt's activations are unreachable now.
            self.optimizer.zero_grad(set_to_none=True)
            emergency_cleanup()
            if self.coord.distributed:
                failure = next((f for f in self.coord.gather(failure) if f is not None), failure)
            failure = failure or Failure(FailureKind.MEMORY_ERROR, "unknown", "out of memory on another rank")
            where = f" on rank {', '.join(map(str, failed_ranks))}" if self.coord.distributed else ""
            old = self.plan.micro
            if not self.plan.halve():
                raise OutOfMemoryAtMinimum(f"training step{where}", failure)
            extra: dict[str, Any] = {"ranks": failed_ranks} if self.coord.distributed else {}
            every = f" on all {self.coord.world_size} ranks" if self.coord.distributed else ""
            self.hook.update(micro_batch=self.plan.micro, accumulation=self.plan.accumulation)
            self.event("oom_backoff", f"{failure.kind.value}{where} at step {self.step + 1}: micro-batch {old}->"
                       f"{self.plan.micro}, accumulation {self.plan.accumulation}{every}, effective batch "
                       f"{self.config.train.effective_batch} kept; retrying the same step",
                       failure=failure.describe(), micro_batch=self.plan.micro, accumulation=self.plan.accumulation,
                       **extra)
        self.coord.reduce_gradients(list(self.net.parameters()))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return loss

    # -- memory and control between steps -----------------------------------------------------------
    def _watch_memory(self) -> tuple[float, str | None]:
        """(RAM percent, why the micro-batch should be halved pre-emptively, or None)."""
        mem = self.config.memory
        ram = read_ram()
        if ram.fraction >= mem.ram_critical:
            report = emergency_cleanup()
            ram = read_ram()
            if ram.fraction >= mem.ram_critical and self.plan.micro > 1:
                return ram.percent, (f"RAM at {ram.percent:.0f}% (critical {mem.ram_critical:.0%}) after cleanup "
                                     f"(freed {report.rss_freed / 2**20:.0f} MiB)")
        elif ram.fraction >= mem.ram_warning and time.monotonic() - self._warned_ram > 60:
            self._warned_ram = time.monotonic()
            self.event("ram_warning", f"RAM at {ram.percent:.0f}% (warning {mem.ram_warning:.0%})")
        return ram.percent, None

    def _watch_high_mark(self) -> tuple[str | None, str | None]:
        """(why to halve the micro-batch, why to checkpoint and stop): the run's own reaction to its memory
        cgroup's high mark, before the hard limit where the kernel's OOM killer acts (guard/high_mark.py)."""
        if self.high_mark is None:
            return None, None
        check = self.high_mark.check(can_back_off=self.plan.micro > 1, cleanup=emergency_cleanup)
        self.hook.update(**self.high_mark.status_fields())
        if check.message:
            self.event("memory_high", check.message)
        if check.action is HighMarkAction.BACKOFF:
            return check.message, None
        return None, check.message if check.action is HighMarkAction.STOP else None

    def _ram_backoff(self, reason: str | None) -> None:
        old = self.plan.micro
        if not self.plan.halve():
            return
        reason = reason or "RAM critical on another rank"
        self.hook.update(micro_batch=self.plan.micro, accumulation=self.plan.accumulation)
        self.event("ram_backoff", f"{reason}: micro-batch {old}->{self.plan.micro}")

    # -- validation ---------------------------------------------------------------------------------
    def validate(self) -> dict[str, float | None]:
        """Dice per region over the validation cases (under torchrun each rank takes its share, summed here)."""
        self.model.eval()
        scores: list[torch.Tensor] = []
        failure: Failure | None = None
        try:
            with torch.no_grad():
                for batch in self.data.val_loader:
                    image = batch["image"].to(self.device)
                    # The bare model: DDP's forward may talk to the other ranks, which validate other cases.
                    logits = guarded_sliding_window(image, self.net, self.config.train.roi_size, self.window,
                                                    self.amp, lambda m: self.event("sw_backoff", m))
                    # Scored where the logits are (the CPU after a CPU-stitch fallback), labels moved there.
                    scores.append(guarded_region_dice(logits, batch["label"], lambda m: self.event("val_backoff", m)))
                    del logits
        except OutOfMemoryAtMinimum as exc:
            failure = exc.failure
        # Per region: sum of the cases' Dice and the number of cases where it is defined; then a "failed" flag.
        totals = torch.zeros(2 * len(REGIONS) + 1, dtype=torch.float64)
        buffer = torch.cat(scores) if failure is None and scores else None
        if isinstance(buffer, torch.Tensor) and buffer.numel():
            values = buffer.detach().double().cpu()
            known = ~torch.isnan(values)
            totals[:len(REGIONS)] = torch.where(known, values, 0.0).sum(0)
            totals[len(REGIONS):-1] = known.sum(0)
        totals[-1] = 1.0 if failure is not None else 0.0
        totals = self.coord.reduce_sum(totals)
        self.model.train()
        if totals[-1] > 0:  # every rank stops together, as after a training-step OOM at micro-batch 1
            raise OutOfMemoryAtMinimum("validation", failure or Failure(FailureKind.MEMORY_ERROR, "unknown",
                                                                        "out of memory on another rank"))
        per_region = [s / n if n else math.nan for s, n in
                      zip(totals[:len(REGIONS)].tolist(), totals[len(REGIONS):-1].tolist(), strict=True)]
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
        bar = tqdm(total=self.total_steps, initial=self.step, file=sys.stderr,
                   disable=not (self.progress and self.coord.is_main),
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
                    ram_percent, pressed = self._watch_memory()
                    high_halve, high_stop = self._watch_high_mark()
                    pressed = pressed or high_halve
                    seconds = time.perf_counter() - started
                    world = {"world_size": self.coord.world_size} if self.coord.distributed else {}
                    self.metrics.write("step", step=self.step, epoch=epoch, loss=round(loss, 6),
                                       micro_batch=used[0], accumulation=used[1],
                                       ram_percent=ram_percent, seconds=round(seconds, 4), **world)
                    peak_vram = torch.cuda.max_memory_reserved() if self.device.type == "cuda" else None
                    self.hook.step_boundary(step=self.step, epoch=epoch, loss=loss, micro_batch=self.plan.micro,
                                            accumulation=self.plan.accumulation, peak_vram=peak_vram)
                    # Stop requests and RAM back-off reach one rank; all ranks act on them at this same step.
                    stop, halve = self.coord.agree(self.hook.stop_requested or high_stop is not None,
                                                   pressed is not None)
                    if halve:
                        self._ram_backoff(pressed)
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.3f}", mb=self.plan.micro, acc=self.plan.accumulation,
                                    ram=f"{ram_percent:.0f}%", refresh=False)
                    if stop:
                        path = self.save()
                        if high_stop is not None:
                            return Outcome("stopped", EXIT_OOM, f"stopped at step {self.step}: {high_stop}", path)
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
