"""The contenders of `python -m benchmarks.train_loops`, each on one named device, and the ledger that counts what each
run actually did.

- the guarded loop: Crash Guard's own trainer (run.prepare/execute);
- a plain MONAI loop, as the tutorials write it (an OOM ends it);
- accelerate's recommended pattern: `Accelerator(gradient_accumulation_steps=k)`, `with accelerator.accumulate(model)`,
  and `find_executable_batch_size` halving the micro-batch while the accumulation keeps the effective batch
  (accelerate's examples/by_feature/automatic_gradient_accumulation.py).

Every count comes from hooks on the run's own optimizer and model (`Ledger`), and the updates that survive are read
from the optimizer state the run leaves behind (AdamW counts its updates per parameter), never written by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from monai.data import DataLoader
from monai.utils import set_determinism

from crashguard.training.config import TrainingConfig
from crashguard.training.data import EpochSampler
from crashguard.training.loss import build_loss
from crashguard.training.model import build_model
from crashguard.training.run import RunPlace, execute, prepare


def lineage(optimizer_state: dict[str, Any]) -> int:
    """Updates applied to a model, from its optimizer's state dict (AdamW's per-parameter `step`); 0 if none."""
    steps = [int(s["step"]) for s in optimizer_state.get("state", {}).values() if "step" in s]
    return max(steps, default=0)


@dataclass
class Ledger:
    """What one contender's run did, counted from hooks on its optimizer and model (across every restart)."""

    device: torch.device
    update_times: list[float] = field(default_factory=list)  # after each optimizer.step() that ran
    update_lineage: list[int] = field(default_factory=list)  # the optimizer's own update count after it
    update_forwards: list[list[int]] = field(default_factory=list)  # micro-batch sizes that made each update
    samples_forwarded: int = 0  # samples through completed training forwards, wasted ones included
    failures: list[int] = field(default_factory=list)  # updates applied (wall clock) when each OOM struck
    retries: list[dict[str, int]] = field(default_factory=list)
    started: float | None = None
    _pending: list[int] = field(default_factory=list)

    def attach(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[Any]:
        return [model.register_forward_pre_hook(self._before_forward),
                model.register_forward_hook(self._after_forward),
                optimizer.register_step_post_hook(self._after_update)]

    @property
    def updates(self) -> int:
        return len(self.update_times)

    def failed(self) -> None:
        """An OOM struck: the micro-batches of the step in flight are wasted."""
        self.failures.append(self.updates)
        self._pending = []

    def _before_forward(self, module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        if self.started is None and module.training:
            self.started = time.perf_counter()

    def _after_forward(self, module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if module.training:
            self.samples_forwarded += args[0].shape[0]
            self._pending.append(args[0].shape[0])

    def _after_update(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the step's kernels are done: times are comparable
        self.update_times.append(time.perf_counter())
        # AdamW steps every parameter together: one parameter's count is the model's (cheap inside the timed loop).
        count = int(next(iter(optimizer.state.values()))["step"])
        if self.failures and self.failures[-1] == self.updates - 1:  # the first update after an OOM
            self.retries.append({"oom_after_updates": self.failures[-1], "resumed_from_update": count - 1,
                                 "micro_batch": self._pending[0] if self._pending else 0,
                                 "accumulation": len(self._pending)})
        self.update_lineage.append(count)
        self.update_forwards.append(self._pending)
        self._pending = []


class OomInjector:
    """A memory cap that appears once `ledger` has counted `from_update` updates: from then on a training forward
    of more than `max_samples` samples asks the device's allocator for 4 TiB, which fails for real with torch's
    own out-of-memory error (CPU: "DefaultCPUAllocator: can't allocate memory"; CUDA: torch.OutOfMemoryError)."""

    def __init__(self, max_samples: int, from_update: int, ledger: Ledger) -> None:
        self.max_samples, self.from_update, self.ledger = max_samples, from_update, ledger
        self.armed = False

    def __call__(self, module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        if module.training and self.ledger.updates >= self.from_update:
            self.armed = True  # memory stays tight once it got tight
        if self.armed and module.training and args[0].shape[0] > self.max_samples:
            self.ledger.failed()
            torch.empty(2**42, dtype=torch.uint8, device=self.ledger.device)  # raises the allocator's OOM


def _optimizer(config: TrainingConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=config.train.learning_rate,
                             weight_decay=config.train.weight_decay)


def _instrument(model: torch.nn.Module, optimizer: torch.optim.Optimizer, ledger: Ledger,
                injector: OomInjector | None) -> list[Any]:
    handles = [model.register_forward_pre_hook(injector)] if injector is not None else []
    return handles + ledger.attach(model, optimizer)


# -- the plain MONAI loop (what most tutorials run) -------------------------------------------------
def plain_loop(config: TrainingConfig, data: Any, steps: int, device: torch.device, ledger: Ledger,
               injector: OomInjector | None = None, checkpoint_dir: Path | None = None,
               checkpoint_every: int | None = None) -> None:
    """An OOM propagates: the plain loop has no answer to it. With `checkpoint_every`, it saves model and optimizer
    every N steps (keeping the newest), as a careful tutorial loop would."""
    set_determinism(seed=config.train.seed)
    model = build_model(config.model).to(device)
    optimizer = _optimizer(config, model)
    loss_fn = build_loss(config.train.loss)
    _instrument(model, optimizer, ledger, injector)
    done, epoch = 0, 0
    while done < steps:
        data.start_epoch(epoch)
        for batch in data.train_loader:
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(batch["image"].to(device)), batch["label"].to(device)).backward()
            optimizer.step()
            done += 1
            if checkpoint_dir is not None and checkpoint_every and done % checkpoint_every == 0:
                checkpoint_dir.mkdir(parents=True, exist_ok=True)
                for old in checkpoint_dir.glob("plain-*.pt"):
                    old.unlink()
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": done},
                           checkpoint_dir / f"plain-{done:06d}.pt")
            if done >= steps:
                break
        epoch += 1


def newest_plain_checkpoint(checkpoint_dir: Path) -> dict[str, Any] | None:
    files = sorted(checkpoint_dir.glob("plain-*.pt"))
    return torch.load(files[-1], weights_only=True) if files else None


# -- accelerate's gradient-accumulation pattern -------------------------------------------------------
@dataclass
class AccelerateRun:
    optimizer: torch.optim.Optimizer  # the last attempt's (its state holds the surviving updates)
    device: str  # where accelerate put the model
    attempts: list[tuple[int, int]]  # (micro-batch, accumulation) per attempt


def accelerate_loop(config: TrainingConfig, data: Any, steps: int, device: torch.device, ledger: Ledger,
                    injector: OomInjector | None = None) -> AccelerateRun:
    """`Accelerator(gradient_accumulation_steps=k)` with `accelerator.accumulate(model)`; `find_executable_batch_size`
    halves the micro-batch on OOM and the accumulation steps grow so that micro x k stays the effective batch.
    Everything that depends on the batch size is rebuilt inside the function, as accelerate asks."""
    from accelerate import Accelerator
    from accelerate.utils import find_executable_batch_size

    effective = config.train.effective_batch
    accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision="no", gradient_accumulation_steps=1)
    if accelerator.device.type != device.type:
        raise RuntimeError(f"accelerate chose {accelerator.device}, the benchmark runs on {device}")
    attempts: list[tuple[int, int]] = []
    last: list[torch.optim.Optimizer] = []
    size = [config.train.micro_batch]

    def halve() -> int:  # the default multiplies by 0.9, which breaks micro x k = effective (4 -> 3, k = 1)
        size[0] //= 2
        return size[0]

    @find_executable_batch_size(starting_batch_size=config.train.micro_batch, reduce_batch_size_fn=halve)
    def train(micro: int) -> None:
        accelerator.free_memory()
        accelerator.gradient_accumulation_steps = effective // micro
        attempts.append((micro, effective // micro))
        set_determinism(seed=config.train.seed)
        model = build_model(config.model)
        optimizer = _optimizer(config, model)
        last[:] = [optimizer]
        handles = _instrument(model, optimizer, ledger, injector)
        loss_fn = build_loss(config.train.loss)
        sampler = EpochSampler(len(data.train_set), config.train.seed)
        loader = DataLoader(data.train_set, batch_size=micro, sampler=sampler, drop_last=True)
        model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
        done, epoch = 0, 0
        try:
            while done < steps:
                data.train_set.set_epoch(epoch)
                sampler.set_epoch(epoch)
                for batch in loader:
                    with accelerator.accumulate(model):
                        accelerator.backward(loss_fn(model(batch["image"]), batch["label"]))
                        optimizer.step()
                        optimizer.zero_grad(set_to_none=True)
                    if accelerator.sync_gradients:
                        done += 1
                        if done >= steps:
                            break
                epoch += 1
        finally:
            for handle in handles:
                handle.remove()

    train()
    return AccelerateRun(last[0], str(accelerator.device), attempts)


# -- Crash Guard's guarded loop ------------------------------------------------------------------------
def guarded_loop(config: TrainingConfig, runs_dir: Path, name: str, ledger: Ledger,
                 injector: OomInjector | None = None) -> tuple[Any, Any]:
    """(trainer, outcome) of a real Crash Guard run on config.train.device."""
    trainer, resumed = prepare(config, RunPlace(runs_dir, name), resume="never", progress=False)
    _instrument(trainer.model, trainer.optimizer, ledger, injector)
    return trainer, execute(trainer, resumed)


def survived(call: Callable[[], Any], is_oom: Callable[[BaseException], bool]) -> tuple[bool, str | None]:
    """Runs a loop that has no OOM answer; (True, None) or (False, the OOM's first line) as the process would die."""
    try:
        call()
    except RuntimeError as exc:
        if not is_oom(exc):
            raise
        return False, str(exc).splitlines()[0][:160]
    return True, None
