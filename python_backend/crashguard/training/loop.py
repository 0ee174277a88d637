"""The MONAI recipe's training loop: data, model, loss, learning rate, validation, best.pt, early stopping, and
the metrics of steps and validations.

Everything else of a run is the one run lifecycle every front door shares, `GuardedRun` (step/lifecycle.py): the
guarded step (step/guarded_step.py: one optimizer step always sees `effective_batch` samples; an OOM halves the
micro-batch, doubling the accumulation, and the *same* step is redone), registration, status, control, memory
reactions, stops (urgent ones too), checkpoints, the ending states and the event log. The trainer gives it its
checkpoint (`_checkpoint`: everything a resume needs) and its thresholds.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from monai.utils import set_determinism
from tqdm import tqdm

from ..guard.failures import Failure, FailureKind
from ..monitor.host import read_ram
from ..runs.hook import RunHook
from ..step.backoff import BatchPlan, OutOfMemoryAtMinimum
from ..step.checkpoint import (
    BEST_NAME,
    CheckpointError,
    checkpoint_name,
    load_checkpoint,
    restore_rng,
    rng_state,
    save_best,
)
from ..step.distributed import Coordinator
from ..step.guarded_step import GuardedStep, StepResult
from ..step.lifecycle import Boundary, Capture, GuardedRun
from ..step.memory_watch import RamThresholds
from ..step.precision import precision_for
from .best import BestTracker
from .config import TrainingConfig
from .data import DecathlonData
from .device_settings import apply_cudnn_benchmark, apply_vram_budget
from .loss import build_loss
from .metrics import MetricsLog
from .model import build_model
from .schedule import lr_at
from .sliding import WindowPlan, guarded_sliding_window
from .transforms import REGIONS
from .validation import guarded_region_dice

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = 1


def _norm(done: StepResult) -> dict[str, float]:
    """The step record's pre-clip gradient norm, when clipping is on."""
    return {} if done.grad_norm is None else {"grad_norm": round(done.grad_norm, 4)}


def _cases(batch: dict[str, Any]) -> dict[str, list[int]]:
    """The step record's training cases (this rank's share under torchrun), by their index in the training set."""
    case = batch.get("case")
    return {"cases": [int(c) for c in case]} if isinstance(case, torch.Tensor) else {}


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def check_model(config: TrainingConfig, state: dict[str, Any]) -> None:
    """The checkpoint's weights fit the config's model (enough to evaluate it)."""
    saved_model = state.get("config", {}).get("model")
    wanted = config.model.model_dump(mode="json")
    if saved_model != wanted:
        raise CheckpointError(f"checkpoint is for model {saved_model}, the config has {wanted}")


def check_compatible(config: TrainingConfig, state: dict[str, Any]) -> None:
    """A checkpoint resumes only the run it came from: same model, same effective batch."""
    check_model(config, state)
    if state.get("effective_batch") != config.train.effective_batch:
        raise CheckpointError(f"checkpoint has effective batch {state.get('effective_batch')}, the config "
                              f"{config.train.effective_batch}: resuming would change the run")


class Trainer:
    """`hook`: the run's registration (prepare() builds it; an evaluation's holds the lock only). `watchdog`: start
    one at registration (no supervisor of ours records a crash: --no-supervise, torchrun)."""

    def __init__(self, config: TrainingConfig, data: DecathlonData, hook: RunHook, metrics: MetricsLog,
                 device: torch.device, progress: bool = True, coord: Coordinator | None = None,
                 watchdog: bool = False) -> None:
        self.coord = coord or Coordinator()  # single process unless run.prepare found torchrun
        self.config = config
        self.data = data
        self.metrics = metrics
        self.device = device
        self.progress = progress
        self.checkpoint_dir = hook.run_dir / "checkpoints"
        memory = config.memory
        train = config.train
        set_determinism(seed=train.seed)
        self.net = build_model(config.model).to(device)  # the model itself (checkpoints, validation)
        self.model = self.coord.wrap(self.net, device)  # DDP under torchrun, else the same module
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=train.learning_rate,
                                           weight_decay=train.weight_decay)
        self.precision = precision_for(train.amp, train.amp_dtype, device)  # float16 on CUDA, bfloat16 if asked
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision.scaled)  # float16 only
        self.loss_fn = build_loss(train.loss)
        # Under torchrun the plan is this rank's share of the global batch; every rank keeps the same plan.
        share = train.effective_batch // self.coord.world_size
        self.guarded = GuardedStep(self.optimizer, micro_batch=min(train.micro_batch, share), expected_batch=share,
                                   coord=self.coord, sync_model=self.model if self.coord.distributed else None,
                                   scaler=self.scaler, grad_clip_norm=train.grad_clip_norm)
        # The run's lifecycle; rank 0 writes the checkpoints: every `every_steps` and `every_minutes` (in the
        # background), and at a stop or the end.
        self.run = GuardedRun(hook.status.name, hook=hook, guarded=self.guarded, model=self.net, coord=self.coord,
                              capture=self._capture, keep=config.checkpoint.keep,
                              checkpoint_every_steps=config.checkpoint.every_steps,
                              checkpoint_every_minutes=config.checkpoint.every_minutes, watchdog=watchdog,
                              ram_thresholds=RamThresholds(memory.log_ram_fraction, memory.backoff_ram_fraction),
                              oom_score_adj=memory.oom_score_adj)
        self.window = WindowPlan(sw_batch_size=train.sw_batch_size, overlap=train.sw_overlap)
        self.validated_at = -1
        # The best validation and the early-stopping count (in every checkpoint); best.pt holds that model.
        self.best = BestTracker(train.early_stopping_patience, train.early_stopping_min_delta)
        self.best_on_disk: float | None = None  # best.pt's metric when resuming: never overwritten by a worse one
        steps = config.train.epochs * data.steps_per_epoch
        self.total_steps = min(steps, train.max_steps) if train.max_steps else steps
        self.lr = self.lr_for(self.step)  # the learning rate of the step in flight (or the next one)
        self._settings_events: list[tuple[str, str, dict[str, Any]]] = []  # written when fit() starts
        self._apply_device_settings()

    @property
    def amp(self) -> bool:
        """Whether forward passes run under autocast (self.precision says in which dtype)."""
        return self.precision.autocast

    @property
    def plan(self) -> BatchPlan:
        return self.guarded.plan

    @property
    def hook(self) -> RunHook:
        return self.run.hook

    @property
    def step(self) -> int:
        """Optimizer steps completed: the run's count (`run.completed_steps`, set when resuming)."""
        return self.run.completed_steps

    # -- state ------------------------------------------------------------------------------------
    def state_dict(self, rng: dict[str, Any] | None = None) -> dict[str, Any]:
        """Everything a resume needs, at a step boundary (`rng`: that boundary's RNG state, if not now)."""
        return {
            "format": CHECKPOINT_FORMAT, "model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(), "step": self.step, "epoch": self.step // self.data.steps_per_epoch,
            "batch_in_epoch": self.step % self.data.steps_per_epoch, "micro_batch": self.plan.used_micro,
            "accumulation": self.plan.accumulation, "effective_batch": self.config.train.effective_batch,
            "world_size": self.coord.world_size,
            "sw_batch_size": self.window.sw_batch_size, "validated_at": self.validated_at,
            "best": self.best.state(),
            "rng": rng if rng is not None else rng_state(),
            "config": self.config.model_dump(mode="json", by_alias=True),
            "regions": {k: list(v) for k, v in self.data.regions.items()},
        }

    def load_state(self, state: dict[str, Any]) -> None:
        check_compatible(self.config, state)
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state["scaler"]:  # empty from a run without float16 scaling: this one starts a fresh scale
            self.scaler.load_state_dict(state["scaler"])
        self.run.completed_steps = int(state["step"])
        self.plan.micro = min(int(state["micro_batch"]), self.plan.micro)  # a learned limit sticks
        self.window.sw_batch_size = min(int(state["sw_batch_size"]), self.window.sw_batch_size)
        self.validated_at = int(state.get("validated_at", -1))
        self.best.load(state.get("best"))
        if self.coord.is_main:
            self.best_on_disk = self._best_file_metric()
        restore_rng(state["rng"])
        self.guarded.boundary_rng = state["rng"]  # an urgent stop before the next step saves this boundary

    def load_weights(self, state: dict[str, Any]) -> None:
        """The model of a checkpoint, to evaluate it (nothing of its training state)."""
        check_model(self.config, state)
        self.net.load_state_dict(state["model"])
        self.run.completed_steps = int(state["step"])
        self.window.sw_batch_size = min(int(state.get("sw_batch_size", self.window.sw_batch_size)),
                                        self.window.sw_batch_size)

    def _best_file_metric(self) -> float | None:
        """best.pt's metric: after a resume from a checkpoint older than it (--resume PATH, a damaged newest
        checkpoint), the run's best model may lie in a history the resumed run no longer has."""
        path = self.checkpoint_dir / BEST_NAME
        if not path.is_file():
            return None
        try:
            metric = (load_checkpoint(path).get("best") or {}).get("metric")
        except CheckpointError as exc:
            log.warning("ignoring %s", exc)
            return None
        return None if metric is None else float(metric)

    def _capture(self, boundary: Boundary) -> Capture:
        """What the run's checkpoint holds and where it goes (rank 0, under the step's lock, from the urgent watcher
        thread too: the parameters, optimizer and step counter are then the last completed step's, the RNG state
        that boundary's); the lifecycle writes it, in the background for a periodic one."""
        return Capture(self.checkpoint_dir / checkpoint_name(boundary.step), self.state_dict(rng=boundary.rng),
                       self.config.checkpoint.keep)

    # -- one optimizer step -----------------------------------------------------------------------
    def _loss_of(self, micro: dict[str, torch.Tensor]) -> torch.Tensor:
        x = micro["image"].to(self.device, non_blocking=True)
        y = micro["label"].to(self.device, non_blocking=True)
        with self.precision.context(self.device.type):
            return self.loss_fn(self.model(x), y)

    def lr_for(self, step: int) -> float:
        """The learning rate of optimizer step `step` (0-based): a pure function of it (schedule.py), so a resumed
        run and a retried step get the rate the uninterrupted run had; no scheduler state is saved."""
        train = self.config.train
        return lr_at(step, base_lr=train.learning_rate, total_steps=self.total_steps, schedule=train.lr_schedule,
                     warmup_steps=train.warmup_steps, min_lr=train.min_lr)

    def train_step(self, batch: dict[str, torch.Tensor]) -> float:
        """One guarded optimizer step outside the run's loop (no boundary); its loss."""
        return self._guarded_step(batch).loss

    def _guarded_step(self, batch: dict[str, torch.Tensor],
                      on_commit: Callable[[StepResult], None] | None = None) -> StepResult:
        self.lr = self.lr_for(self.step)  # set before the step; its OOM retries keep it
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        return self.guarded.run({"image": batch["image"], "label": batch["label"]}, self._loss_of, on_commit)

    # -- validation ---------------------------------------------------------------------------------
    def validate(self, **tags: Any) -> dict[str, float | None]:
        """Dice per region over the validation cases (under torchrun each rank takes its share, summed here).
        `tags` go into the `val` record (an evaluation of a checkpoint is tagged as one)."""
        self.model.eval()
        scores: list[torch.Tensor] = []
        failure: Failure | None = None
        event = self.run.event
        try:
            with torch.no_grad():
                for batch in self.data.val_loader:
                    image = batch["image"].to(self.device)
                    # The bare model: DDP's forward may talk to the other ranks, which validate other cases.
                    logits = guarded_sliding_window(image, self.net, self.config.train.roi_size, self.window,
                                                    self.precision, lambda m: event("sw_backoff", m))
                    # Scored where the logits are (the CPU after a CPU-stitch fallback), labels moved there.
                    scores.append(guarded_region_dice(logits, batch["label"], lambda m: event("val_backoff", m)))
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
        defined = [v for v in dice.values() if v is not None]
        mean = round(sum(defined) / len(defined), 4) if defined else None
        self.validated_at = self.step
        self.metrics.write("val", step=self.step, epoch=max(0, self.step - 1) // self.data.steps_per_epoch,
                           dice_mean=mean, **{f"dice_{k.lower()}": v for k, v in dice.items()}, **tags)
        log.info("validation at step %d: Dice mean %s (TC %s, WT %s, ET %s)", self.step, mean, *dice.values())
        return {"mean": mean, **dice}

    # -- best model and early stopping ---------------------------------------------------------------
    def _validation_due(self) -> bool:
        """The schedule validates at this step (an epoch end every val_every_epochs)."""
        spe = self.data.steps_per_epoch
        return self.step > 0 and self.step % spe == 0 and (self.step // spe) % self.config.train.val_every_epochs == 0

    @property
    def validation_pending(self) -> bool:
        """Resumed at a due validation that the checkpoint was written before (checkpoints at an epoch end are
        written before its validation): the resumed run does it first, so best and count follow the same path."""
        return self._validation_due() and self.validated_at != self.step

    def _validate_and_track(self) -> str | None:
        """Validate and keep best.pt; when the early-stopping patience is spent, why the run ends (its final
        checkpoint, written by the run's end, holds the spent patience)."""
        mean = self.validate()["mean"]
        with self.guarded.lock:  # an urgent checkpoint sees this validation counted whole or not at all
            improved = self.best.observe(mean, self.step)
            self.run.mark_changed()
        if improved:
            self._save_best()
        if not self.best.exhausted:
            return None
        message = self.best.describe_stop(self.step)
        self.run.event("early_stop", message, best_dice_mean=self.best.metric, best_step=self.best.step)
        return message

    def _save_best(self) -> None:
        """Rank 0 writes checkpoints/best.pt (a full checkpoint: the metric and step in its `best`)."""
        if not self.coord.is_main:
            return
        metric = self.best.metric
        assert metric is not None
        if self.best_on_disk is not None and metric < self.best_on_disk:
            self.run.event("best_kept", f"best of this attempt {metric} at step {self.step}; {BEST_NAME} keeps "
                           f"{self.best_on_disk} from an earlier attempt", notify=False, dice_mean=metric)
            return
        with self.guarded.lock:
            state = self.state_dict()
        path = save_best(self.checkpoint_dir, state)
        self.best_on_disk = metric
        # A metrics record, not an event: a learning fact, rewound with its validation when a resume redoes it.
        self.metrics.write("best", step=self.step, dice_mean=metric, path=str(path))
        log.info("new best Dice %s at step %d: %s", metric, self.step, path.name)

    # -- the run ------------------------------------------------------------------------------------
    def fit(self) -> str:
        """Train to the last step, an early stop, or a stop agreed at a boundary (then `run.should_stop` is set);
        how the run finished. The run's end (`self.run.end`) writes the final or the stop's checkpoint."""
        for kind, message, fields in self._settings_events:
            self.run.event(kind, message, **fields)
        self._settings_events.clear()
        if self.step >= self.total_steps:
            return f"already complete at step {self.step}"
        if self.best.exhausted:  # a resume of a run that stopped early
            return f"already complete: {self.best.describe_stop(self.step)}"
        spe = self.data.steps_per_epoch
        if self.step == 0 and self.config.train.val_at_start:
            self._validate_and_track()
        elif self.validation_pending:
            stopped = self._validate_and_track()
            if stopped is not None:
                return stopped
        bar = tqdm(total=self.total_steps, initial=self.step, file=sys.stderr,
                   disable=not (self.progress and self.coord.is_main),
                   desc=self.hook.status.name, unit="step", dynamic_ncols=True)
        try:
            while self.step < self.total_steps:
                epoch = self.run.epoch = self.step // spe
                self.data.start_epoch(epoch, self.step % spe)
                for batch in self.data.train_loader:
                    started = time.perf_counter()
                    world = {"world_size": self.coord.world_size} if self.coord.distributed else {}

                    cases = _cases(batch)

                    def record(done: StepResult, epoch: int = epoch, started: float = started,
                               world: dict[str, int] = world, cases: dict[str, list[int]] = cases) -> None:
                        # Under the step's lock: an urgent checkpoint never precedes its step's record.
                        self.metrics.write("step", step=self.step, epoch=epoch, loss=round(done.loss, 6),
                                           micro_batch=done.micro_batch, accumulation=done.accumulation,
                                           lr=self.lr, **_norm(done), ram_percent=read_ram().percent,
                                           seconds=round(time.perf_counter() - started, 4), **world, **cases)

                    done = self._guarded_step(batch, record)
                    self.run.after_step(done)  # status, control, memory, the agreed stop or back-off, checkpoint
                    bar.update(1)
                    bar.set_postfix(loss=f"{done.loss:.3f}", mb=self.plan.micro, acc=self.plan.accumulation,
                                    ram=f"{self.run.memory.ram_percent or 0:.0f}%", refresh=False)
                    if self.run.should_stop:
                        return f"stopped at step {self.step}"
                    if self.step >= self.total_steps:
                        break
                if self._validation_due():
                    stopped = self._validate_and_track()
                    if stopped is not None:
                        return stopped
            if self.validated_at != self.step:
                self._validate_and_track()
            return f"finished at step {self.step}"
        finally:
            bar.close()

    def _apply_device_settings(self) -> None:
        """cuDNN's search, the VRAM budget and the precision actually used (device_settings.py, precision.py),
        applied now; their events wait for fit(), after the run's metrics file is rewound to its checkpoint."""
        apply_cudnn_benchmark(self.config.train.cudnn_benchmark, self.device)
        apply_vram_budget(self.config.memory.vram_budget_gb, self.device,
                          lambda kind, message, fields: self._settings_events.append((kind, message, fields)))
        if self.precision.note:
            self._settings_events.append(("precision_fallback", f"train.amp_dtype {self.config.train.amp_dtype}: "
                                          f"{self.precision.note}", {"precision": self.precision.name}))
        for kind, message, _ in self._settings_events:
            log.log(logging.WARNING if kind == "precision_fallback" else logging.INFO, "%s", message)
        log.info("precision: %s%s", self.precision.name if self.amp else "float32",
                 " autocast with a GradScaler" if self.precision.scaled else " autocast" if self.amp else "")
