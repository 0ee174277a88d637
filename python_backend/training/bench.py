"""Benchmark of the guarded loop: throughput against a plain MONAI loop, and steps lost to an injected OOM
compared with a plain loop and with accelerate's find_executable_batch_size, on the same model/data/seed.

The injected OOM is a real allocator failure: from a given step on, any forward pass with more samples than
the "memory cap" asks torch for 4 TiB first, which raises torch's genuine "DefaultCPUAllocator: can't allocate
memory" error (the same text accelerate and Crash Guard recognise).
"""

from __future__ import annotations

import itertools
import json
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from monai.data import DataLoader
from monai.losses import DiceLoss
from monai.utils import set_determinism

from ..guard.failures import is_oom
from .config import TrainingConfig, parse_config
from .data import EpochSampler, load_monai_decathlon_safe
from .model import build_model
from .run import RunPlace, execute, prepare
from .sample_data import write_sample_dataset

log = logging.getLogger(__name__)


@dataclass
class OomResult:
    loop: str
    survived: bool
    optimizer_steps_done: int  # steps whose result the final model contains
    steps_lost: int  # completed steps thrown away (redone from scratch or never recovered)
    effective_batch_after: int | None
    seconds: float
    note: str


class OomInjector:
    """A memory cap that appears at `from_step`: forwards with more than `max_samples` samples fail for real."""

    def __init__(self, max_samples: int, from_step: int, step_of: Callable[[], int]) -> None:
        self.max_samples, self.from_step, self.step_of = max_samples, from_step, step_of
        self.armed = False
        self.fired = 0

    def __call__(self, module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        if module.training and self.step_of() >= self.from_step:
            self.armed = True  # memory stays tight once it got tight
        if self.armed and module.training and args[0].shape[0] > self.max_samples:
            self.fired += 1
            torch.empty(2**42, dtype=torch.uint8)  # raises torch's real CPU OOM


def bench_config(data_root: Path, roi: int, steps: int, threads: int, micro: int, every: int) -> TrainingConfig:
    return parse_config(json.dumps({
        "name": "bench", "data": {"root": str(data_root), "cache_rate": 1.0, "workers": 0, "check": "off"},
        "model": {"name": "segresnet", "init_filters": 8, "levels": 4},
        "train": {"roi_size": [roi] * 3, "epochs": 1000, "max_steps": steps, "effective_batch": 4,
                  "micro_batch": micro, "learning_rate": 1e-3, "threads": threads, "val_every_epochs": 1000,
                  "seed": 0},
        "checkpoint": {"every_steps": every, "keep": 1},
    }))


# -- the plain MONAI loop (what most tutorials run) -------------------------------------------------
def plain_loop(config: TrainingConfig, data: Any, steps: int, injector: OomInjector | None = None
               ) -> tuple[list[float], int]:
    """Returns (step end times, steps done). An OOM propagates: the plain loop has no answer to it."""
    set_determinism(seed=config.train.seed)
    model = build_model(config.model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.learning_rate,
                                  weight_decay=config.train.weight_decay)
    loss_fn = DiceLoss(sigmoid=True, smooth_nr=0.0, smooth_dr=1e-5, squared_pred=True)
    done, times = 0, []
    if injector is not None:
        injector.step_of = lambda: done
        model.register_forward_pre_hook(injector)
    epoch = 0
    while done < steps:
        data.start_epoch(epoch)
        for batch in data.train_loader:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(batch["image"]), batch["label"])
            loss.backward()
            optimizer.step()
            done += 1
            times.append(time.perf_counter())
            if done >= steps:
                break
        epoch += 1
    return times, done


def guarded_loop(config: TrainingConfig, runs_dir: Path, name: str, injector: OomInjector | None = None
                 ) -> tuple[list[float], Any]:
    trainer, resumed = prepare(config, RunPlace(runs_dir, name), resume="never", progress=False)
    times: list[float] = []
    original = trainer.train_step

    def timed(batch: dict[str, torch.Tensor]) -> float:
        loss = original(batch)
        times.append(time.perf_counter())
        return loss

    trainer.train_step = timed  # type: ignore[method-assign]
    if injector is not None:
        injector.step_of = lambda: trainer.step
        trainer.model.register_forward_pre_hook(injector)
    outcome = execute(trainer, resumed)
    return times, (trainer, outcome)


def rate(times: list[float], skip: int) -> float:
    """Steps per second after `skip` warm-up steps: 1 / the median interval between step ends (so the loop's
    own overhead counts, while a burst of load from another process on a shared machine hits one interval)."""
    window = times[skip:]
    return 1.0 / statistics.median(b - a for a, b in itertools.pairwise(window))


def throughput(data_root: Path, runs_dir: Path, roi: int, steps: int, repeats: int, threads: int
               ) -> dict[str, Any]:
    config = bench_config(data_root, roi, steps, threads, micro=4, every=10**6)
    data = load_monai_decathlon_safe(data_root, batch_size=4, cache_rate=1.0, roi_size=(roi,) * 3)
    plain, guarded = [], []
    trainer = None
    for i in range(repeats):  # interleaved, so drift in machine load hits both alike
        plain.append(rate(plain_loop(config, data, steps)[0], skip=2))
        times, (trainer, _) = guarded_loop(config, runs_dir, f"tp{i}")
        guarded.append(rate(times, skip=2))
    overhead = guard_overhead(trainer, runs_dir / "overhead.jsonl")
    step_s = 1.0 / statistics.median(plain)
    return {"plain_steps_per_s": plain, "guarded_steps_per_s": guarded,
            "ratio_median": statistics.median(g / p for g, p in zip(guarded, plain, strict=True)),
            "ratio_of_medians": statistics.median(guarded) / statistics.median(plain),
            "guard_overhead_ms_per_step": round(overhead * 1e3, 3),
            "ratio_from_overhead": step_s / (step_s + overhead)}


def guard_overhead(trainer: Any, metrics_path: Path, iterations: int = 200) -> float:
    """Median seconds of what the guarded loop adds between two steps (memory reading, metrics line, status
    update and control poll), timed on its own: immune to the load other processes put on a shared machine."""
    from .metrics import MetricsLog

    trainer.metrics = MetricsLog(metrics_path)
    samples = []
    for i in range(iterations):
        started = time.perf_counter()
        ram, _pressed = trainer._watch_memory()
        trainer.metrics.write("step", step=i, epoch=0, loss=0.5, micro_batch=4, accumulation=1, ram_percent=ram,
                              seconds=0.4)
        trainer.hook.step_boundary(step=i, epoch=0, loss=0.5, micro_batch=4, accumulation=1, peak_vram=None)
        samples.append(time.perf_counter() - started)
    trainer.metrics.close()
    return statistics.median(samples)


def oom_comparison(data_root: Path, runs_dir: Path, roi: int, steps: int, oom_step: int, threads: int
                   ) -> list[OomResult]:
    results = []
    config = bench_config(data_root, roi, steps, threads, micro=4, every=10**6)

    started = time.perf_counter()
    injector = OomInjector(max_samples=2, from_step=oom_step, step_of=lambda: 0)
    _, (trainer, outcome) = guarded_loop(config, runs_dir, "oom-guarded", injector)
    results.append(OomResult("crashguard", outcome.exit_code == 0, trainer.step, 0, trainer.plan.effective,
                             time.perf_counter() - started,
                             f"OOM at step {oom_step + 1}: micro-batch 4->{trainer.plan.micro}, accumulation "
                             f"{trainer.plan.accumulation}; the same step redone"))

    data = load_monai_decathlon_safe(data_root, batch_size=4, cache_rate=1.0, roi_size=(roi,) * 3)
    started = time.perf_counter()
    injector = OomInjector(max_samples=2, from_step=oom_step, step_of=lambda: 0)
    done = 0
    try:
        done = plain_loop(config, data, steps, injector)[1]
        survived = True
    except RuntimeError as exc:
        if not is_oom(exc):
            raise
        survived, done = False, oom_step
    results.append(OomResult("plain MONAI loop", survived, 0 if not survived else done,
                             done if not survived else 0, None, time.perf_counter() - started,
                             "the OOM ends the process; without a checkpoint every completed step is lost"))

    results.append(_accelerate(config, data, steps, oom_step))
    return results


def _accelerate(config: TrainingConfig, data: Any, steps: int, oom_step: int) -> OomResult:
    from accelerate.utils import find_executable_batch_size

    injector = OomInjector(max_samples=2, from_step=oom_step, step_of=lambda: 0)
    attempts: list[tuple[int, int]] = []  # (batch size, steps completed) per attempt
    started = time.perf_counter()

    @find_executable_batch_size(starting_batch_size=config.train.effective_batch)
    def train(batch_size: int) -> int:
        # accelerate's pattern: everything that depends on the batch size is rebuilt inside the function.
        set_determinism(seed=config.train.seed)
        model = build_model(config.model)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.learning_rate,
                                      weight_decay=config.train.weight_decay)
        loss_fn = DiceLoss(sigmoid=True, smooth_nr=0.0, smooth_dr=1e-5, squared_pred=True)
        sampler = EpochSampler(len(data.train_set), config.train.seed)
        loader = DataLoader(data.train_set, batch_size=batch_size, sampler=sampler, drop_last=True)
        attempts.append((batch_size, 0))
        done, epoch = 0, 0
        injector.step_of = lambda: done + sum(n for _, n in attempts[:-1])  # wall-clock steps so far
        handle = model.register_forward_pre_hook(injector)
        try:
            while done < steps:
                data.train_set.set_epoch(epoch)
                sampler.set_epoch(epoch)
                for batch in loader:
                    optimizer.zero_grad(set_to_none=True)
                    loss_fn(model(batch["image"]), batch["label"]).backward()
                    optimizer.step()
                    done += 1
                    attempts[-1] = (batch_size, done)
                    if done >= steps:
                        break
                epoch += 1
        finally:
            handle.remove()
        return done

    done = train()
    lost = sum(n for _, n in attempts[:-1])
    sizes = " -> ".join(str(b) for b, _ in attempts)
    return OomResult("accelerate find_executable_batch_size", True, done, lost, attempts[-1][0],
                     time.perf_counter() - started,
                     f"batch size {sizes}: each OOM restarts training from scratch; the effective batch changes")


def run_benchmark(roi: int = 32, steps: int = 20, repeats: int = 3, oom_steps: int = 10, oom_step: int = 4,
                  threads: int = 1, work_dir: Path | None = None) -> dict[str, Any]:
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="crashguard-bench-") as tmp:
        base = work_dir or Path(tmp)
        data_root = base / "data"
        if not (data_root / "Task01_BrainTumour").is_dir():
            write_sample_dataset(data_root / "Task01_BrainTumour", cases=16, size=48, seed=0)
        runs_dir = base / "runs"
        tp = throughput(data_root, runs_dir, roi, steps, repeats, threads)
        oom = oom_comparison(data_root, runs_dir, roi, oom_steps, oom_step, threads)
    return {"setup": {"model": "SegResNet(init_filters=8)", "roi": roi, "effective_batch": 4, "threads": threads,
                      "throughput_steps": steps, "repeats": repeats, "oom_run_steps": oom_steps,
                      "oom_from_step": oom_step + 1, "memory_cap_samples": 2},
            "throughput": tp, "oom": [asdict(r) for r in oom]}
