"""Overhead of each integration per step against the same loop unguarded, measured in one run (goal >= 0.97).

    python benchmarks/integrations.py [--rounds 5] [--steps 8] [--size 48]

For each integration (plain loop with `guarded_run`, MONAI SupervisedTrainer with CrashGuardHandler and its
iteration, Lightning with CrashGuardCallback and its guarded step under manual optimization) the same model, data and
optimizer are trained for `--steps` steps unguarded, then guarded, alternating for `--rounds` rounds; the figure is
the ratio of the medians of steps/s (guarded / unguarded), the median of the per-round ratios, and the difference in
time per step. With `--size 4` the model's compute is ~nothing, so that difference is the guard's own cost per
step. Timing covers the training steps only (Lightning: from on_train_start to on_train_end; MONAI: from STARTED to
the last iteration's end). 1 CPU thread; the model
and data are the examples' (examples/tiny3d.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from tiny3d import LOSS, SAMPLES, SyntheticVolumes, batch_for, build_model

BATCH = 4


def plain(steps: int, size: int, runs_dir: str | None) -> float:
    from crashguard.run import guarded_run

    model = build_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = [batch_for(i, BATCH, size) for i in range(steps)]
    if runs_dir is None:
        started = time.perf_counter()
        for batch in batches:
            optimizer.zero_grad(set_to_none=True)
            LOSS(model(batch["image"]), batch["label"]).backward()
            optimizer.step()
        return steps / (time.perf_counter() - started)
    with guarded_run("bench-plain", model=model, optimizer=optimizer, runs_dir=runs_dir, watchdog=False) as run:
        started = time.perf_counter()
        for batch in batches:
            run.step(batch, lambda b: LOSS(model(b["image"]), b["label"]))
        elapsed = time.perf_counter() - started
    return steps / elapsed


def loader(steps: int, size: int) -> torch.utils.data.DataLoader:
    data = torch.utils.data.Subset(SyntheticVolumes(size), list(range(min(SAMPLES, steps * BATCH))))
    cached = [data[i] for i in range(len(data))]  # the same tensors every round: no data cost in the timing
    return torch.utils.data.DataLoader(cached, batch_size=BATCH, shuffle=False)


def monai(steps: int, size: int, runs_dir: str | None) -> float:
    from monai.engines import SupervisedTrainer

    from crashguard.monai import CrashGuardHandler

    model = build_model()
    epochs = max(1, steps * BATCH // SAMPLES)
    handler = CrashGuardHandler("bench-monai", runs_dir=runs_dir, watchdog=False) if runs_dir else None
    trainer = SupervisedTrainer(device=torch.device("cpu"), max_epochs=epochs, train_data_loader=loader(steps, size),
                                network=model, optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3),
                                loss_function=LOSS, iteration_update=handler.iteration if handler else None,
                                train_handlers=[handler] if handler else None)
    from ignite.engine import Events

    times: list[float] = []  # after every other handler of the iteration (the guard's status and control too)
    trainer.add_event_handler(Events.STARTED, lambda _: times.append(time.perf_counter()))
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _: times.append(time.perf_counter()))
    trainer.run()
    return (len(times) - 1) / (times[-1] - times[0])


def lightning(steps: int, size: int, runs_dir: str | None) -> float:
    import lightning.pytorch as pl

    from crashguard.lightning import CrashGuardCallback

    class Module(pl.LightningModule):
        def __init__(self, guard: CrashGuardCallback | None) -> None:
            super().__init__()
            self.model = build_model()
            self.guard = guard
            self.automatic_optimization = False

        def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
            if self.guard is not None:
                return self.guard.step(self, batch, lambda b: LOSS(self.model(b["image"]), b["label"]))
            optimizer = self.optimizers()
            optimizer.zero_grad()
            loss = LOSS(self.model(batch["image"]), batch["label"])
            self.manual_backward(loss)
            optimizer.step()
            return loss.detach()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.AdamW(self.model.parameters(), lr=1e-3)

    class Clock(pl.Callback):
        def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            self.started = time.perf_counter()

        def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            self.elapsed = time.perf_counter() - self.started

    guard = CrashGuardCallback("bench-lightning", runs_dir=runs_dir, watchdog=False) if runs_dir else None
    clock = Clock()
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[clock, *([guard] if guard else [])])
    trainer.fit(Module(guard), loader(steps, size))
    return trainer.global_step / clock.elapsed


def measure(name: str, run: Callable[[int, int, str | None], float], rounds: int, steps: int, size: int,
            runs_dir: str) -> None:
    run(2, size, None)  # warm-up: first-call allocations and lazy imports
    run(2, size, runs_dir)
    bare: list[float] = []
    guarded: list[float] = []
    for _ in range(rounds):
        bare.append(run(steps, size, None))
        guarded.append(run(steps, size, runs_dir))
    ratios = [g / b for g, b in zip(guarded, bare, strict=True)]
    extra_ms = (1 / statistics.median(guarded) - 1 / statistics.median(bare)) * 1e3
    print(f"{name:10s} unguarded {statistics.median(bare):7.2f} steps/s   guarded {statistics.median(guarded):7.2f} "
          f"steps/s   ratio of medians {statistics.median(guarded) / statistics.median(bare):.3f}   "
          f"median of per-round ratios {statistics.median(ratios):.3f}   guard {extra_ms:+.2f} ms/step", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--only", choices=("plain", "monai", "lightning"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{args.rounds} rounds of {args.steps} steps, batch {BATCH} of {args.size}³ volumes, 1 thread")
    with tempfile.TemporaryDirectory(prefix="crashguard-bench-") as runs_dir:
        for name, run in (("plain", plain), ("monai", monai), ("lightning", lightning)):
            if args.only in (None, name):
                measure(name, run, args.rounds, args.steps, args.size, runs_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
