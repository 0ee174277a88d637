"""`python -m benchmarks.train_loops`: the guarded loop's throughput against a plain MONAI loop and accelerate's
gradient-accumulation loop, and the steps each loses to an injected OOM, on one named device, same model, data,
loss and seed (the contenders are in train_loops_contenders.py).

Throughput: the loops run interleaved (`repeats` rounds of plain, guarded, accelerate), so drift in the load of a
shared machine hits all alike; the figure is the median of the per-round ratios.

The OOM: from a chosen optimizer step on, a training forward of more than 2 samples asks the allocator for 4 TiB,
which fails for real with torch's own error. The failure is real, its timing is the benchmark's choice (it is not
memory pressure). What each loop then did (updates applied, updates in the model it leaves behind, samples
forwarded, where it resumed) is counted from the run: see train_loops_contenders.Ledger.
"""

from __future__ import annotations

import itertools
import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks.train_loops_contenders import (
    Ledger,
    OomInjector,
    accelerate_loop,
    guarded_loop,
    lineage,
    newest_plain_checkpoint,
    plain_loop,
    survived,
)
from crashguard.guard.failures import is_oom
from crashguard.training.config import TrainingConfig, parse_config
from crashguard.training.data import load_monai_decathlon_safe
from crashguard.training.loop import pick_device
from crashguard.training.sample_data import write_sample_dataset

EFFECTIVE_BATCH = 4
MEMORY_CAP_SAMPLES = 2
INJECTION = ("a training forward of more than 2 samples, from the chosen step on, asks the device's allocator for "
             "4 TiB: torch's own out-of-memory error, raised by a real failed allocation at a point the benchmark "
             "chose (not memory pressure)")


@dataclass
class OomResult:
    loop: str
    survived: bool
    target_steps: int
    updates_applied: int  # optimizer.step() calls that ran, over every attempt
    steps_kept: int  # updates in the model the run leaves behind (its optimizer state's own count)
    steps_lost: int  # updates_applied - steps_kept: computed, then thrown away
    reached_target: bool
    samples_forwarded: int  # through completed training forwards, wasted ones included
    samples_kept: int  # the samples of the updates kept
    retries: list[dict[str, int]]  # per OOM answered: after how many updates, resumed from which, new micro x k
    effective_batch_after: int | None  # samples of the last update
    train_seconds: float | None  # first forward to last update
    steps_per_s_after_oom: float | None  # median interval between the updates after the last retry
    note: str


def bench_config(data_root: Path, roi: int, steps: int, threads: int, micro: int, device: str) -> TrainingConfig:
    return parse_config(json.dumps({
        "name": "bench", "data": {"root": str(data_root), "cache_rate": 1.0, "workers": 0, "check": "off"},
        "model": {"name": "segresnet", "init_filters": 8, "levels": 4},
        "train": {"roi_size": [roi] * 3, "epochs": 1000, "max_steps": steps, "effective_batch": EFFECTIVE_BATCH,
                  "micro_batch": micro, "learning_rate": 1e-3, "threads": threads, "val_every_epochs": 1000,
                  "seed": 0, "device": device, "amp": False},  # fp32 everywhere: the same work for every loop
        "checkpoint": {"every_steps": 10**6, "keep": 1},
    }))


def rate(times: list[float], skip: int) -> float | None:
    """Steps per second after `skip` warm-up steps: 1 / the median interval between step ends (so the loop's
    own overhead counts, while a burst of load from another process on a shared machine hits one interval)."""
    window = times[skip:]
    if len(window) < 2:
        return None
    return 1.0 / statistics.median(b - a for a, b in itertools.pairwise(window))


def _pair_median(top: list[float], bottom: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(top, bottom, strict=True))


def throughput(data_root: Path, runs_dir: Path, roi: int, steps: int, repeats: int, threads: int,
               device: torch.device) -> dict[str, Any]:
    """Micro-batch = effective batch (no accumulation) for all three: the same work per step."""
    config = bench_config(data_root, roi, steps, threads, micro=EFFECTIVE_BATCH, device=device.type)
    data = load_monai_decathlon_safe(data_root, batch_size=EFFECTIVE_BATCH, cache_rate=1.0, roi_size=(roi,) * 3)
    rates: dict[str, list[float]] = {"plain": [], "guarded": [], "accelerate": []}
    trainer = None
    for i in range(repeats):  # interleaved
        for loop in rates:
            ledger = Ledger(device)
            if loop == "plain":
                plain_loop(config, data, steps, device, ledger)
            elif loop == "guarded":
                trainer, _ = guarded_loop(config, runs_dir, f"tp{i}", ledger)
            else:
                accelerate_loop(config, data, steps, device, ledger)
            measured = rate(ledger.update_times, skip=2)
            assert measured is not None  # run_benchmark asks for >= 4 steps
            rates[loop].append(measured)
    overhead = guard_overhead(trainer, runs_dir / "overhead.jsonl")
    step_s = 1.0 / statistics.median(rates["plain"])
    return {"plain_steps_per_s": rates["plain"], "guarded_steps_per_s": rates["guarded"],
            "accelerate_steps_per_s": rates["accelerate"],
            "ratio_median": _pair_median(rates["guarded"], rates["plain"]),
            "ratio_of_medians": statistics.median(rates["guarded"]) / statistics.median(rates["plain"]),
            "accelerate_ratio_median": _pair_median(rates["accelerate"], rates["plain"]),
            "guarded_vs_accelerate_ratio_median": _pair_median(rates["guarded"], rates["accelerate"]),
            "guard_overhead_ms_per_step": round(overhead * 1e3, 3), "ratio_from_overhead": step_s / (step_s + overhead)}


def guard_overhead(trainer: Any, metrics_path: Path, iterations: int = 200) -> float:
    """Median seconds of what the guarded loop adds between two steps (memory reading, metrics line, status
    update and control poll), timed on its own: immune to the load other processes put on a shared machine."""
    from crashguard.training.metrics import MetricsLog

    trainer.metrics = MetricsLog(metrics_path)
    samples = []
    for i in range(iterations):
        started = time.perf_counter()
        trainer.run.memory.check(can_back_off=trainer.plan.micro > 1)  # the run's between-steps memory reading
        ram = trainer.run.memory.ram_percent
        trainer.metrics.write("step", step=i, epoch=0, loss=0.5, micro_batch=4, accumulation=1, ram_percent=ram,
                              seconds=0.4)
        trainer.hook.step_boundary(step=i, epoch=0, loss=0.5, micro_batch=4, accumulation=1, peak_vram=None)
        samples.append(time.perf_counter() - started)
    trainer.metrics.close()
    return statistics.median(samples)


def _result(loop: str, alive: bool, steps: int, ledger: Ledger, kept: int, note: str) -> OomResult:
    forwards = ledger.update_forwards
    samples_kept = sum(sum(f) for f in forwards[len(forwards) - kept:]) if kept else 0
    after = ledger.update_times[ledger.retries[-1]["oom_after_updates"]:] if ledger.retries else []
    seconds = ledger.update_times[-1] - ledger.started if ledger.update_times and ledger.started else None
    return OomResult(loop, alive, steps, ledger.updates, kept, ledger.updates - kept, alive and kept >= steps,
                     ledger.samples_forwarded, samples_kept, ledger.retries,
                     sum(forwards[-1]) if alive and forwards else None,
                     None if seconds is None else round(seconds, 3), rate(after, skip=0), note)


def oom_comparison(data_root: Path, runs_dir: Path, roi: int, steps: int, oom_step: int, threads: int,
                   device: torch.device, plain_checkpoint_every: int | None = None) -> list[OomResult]:
    """`oom_step`: updates completed before memory gets tight (the OOM strikes the next one)."""
    config = bench_config(data_root, roi, steps, threads, micro=EFFECTIVE_BATCH, device=device.type)
    results = []

    ledger = Ledger(device)
    _, outcome = guarded_loop(config, runs_dir, "oom-guarded", ledger,
                              OomInjector(MEMORY_CAP_SAMPLES, oom_step, ledger))
    alive = outcome.exit_code == 0
    # The updates kept: the optimizer state in the run's final checkpoint on disk.
    kept = lineage(torch.load(outcome.checkpoint, weights_only=True)["optimizer"]) if outcome.checkpoint else 0
    results.append(_result("crashguard", alive, steps, ledger, kept,
                           "the failed step is redone at a smaller micro-batch with more accumulation"))

    data = load_monai_decathlon_safe(data_root, batch_size=EFFECTIVE_BATCH, cache_rate=1.0, roi_size=(roi,) * 3)
    ledger = Ledger(device)
    place = runs_dir / "oom-plain"
    alive, error = survived(lambda: plain_loop(config, data, steps, device, ledger,
                                               OomInjector(MEMORY_CAP_SAMPLES, oom_step, ledger), place,
                                               plain_checkpoint_every), is_oom)
    # The process would end here: what survives is its newest checkpoint on disk.
    saved = newest_plain_checkpoint(place)
    kept = lineage(saved["optimizer"]) if saved else 0
    every = f"a checkpoint every {plain_checkpoint_every} steps" if plain_checkpoint_every else "no checkpoint"
    results.append(_result("plain MONAI loop", alive, steps, ledger, kept,
                           f"{every}; {'the OOM ends the process: ' + str(error) if error else 'no OOM'}"))

    ledger = Ledger(device)
    run = accelerate_loop(config, data, steps, device, ledger, OomInjector(MEMORY_CAP_SAMPLES, oom_step, ledger))
    kept = lineage(run.optimizer.state_dict())
    plan = " -> ".join(f"{m} x {k}" for m, k in run.attempts)
    results.append(_result("accelerate find_executable_batch_size + accumulate", True, steps, ledger, kept,
                           f"on {run.device}; micro-batch x accumulation {plan}: each OOM reruns the training "
                           "function from its start"))
    return results


def describe_device(device: torch.device) -> dict[str, Any]:
    import accelerate

    found: dict[str, Any] = {"device": device.type, "torch": torch.__version__, "accelerate": accelerate.__version__,
                             "torch_threads": torch.get_num_threads(), "precision": "fp32"}
    if device.type == "cuda":
        found["gpu"] = torch.cuda.get_device_name(device)
    return found


def run_benchmark(roi: int = 32, steps: int = 20, repeats: int = 3, oom_steps: int = 10, oom_step: int = 4,
                  threads: int = 1, work_dir: Path | None = None, device: str = "cpu",
                  plain_checkpoint_every: int | None = None) -> dict[str, Any]:
    """`device`: cpu, cuda or auto (cuda if there is one); every loop runs there."""
    if steps < 4:
        raise ValueError(f"--steps {steps} leaves no interval to time after 2 warm-up steps (use >= 4)")
    chosen = pick_device(device)
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA device")
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="crashguard-bench-") as tmp:
        base = work_dir or Path(tmp)
        data_root = base / "data"
        if not (data_root / "Task01_BrainTumour").is_dir():
            write_sample_dataset(data_root / "Task01_BrainTumour", cases=16, size=48, seed=0)
        runs_dir = base / "runs"
        tp = throughput(data_root, runs_dir, roi, steps, repeats, threads, chosen)
        oom = oom_comparison(data_root, runs_dir, roi, oom_steps, oom_step, threads, chosen, plain_checkpoint_every)
    return {"setup": {**describe_device(chosen), "model": "SegResNet(init_filters=8)", "roi": roi,
                      "effective_batch": EFFECTIVE_BATCH, "threads": threads, "throughput_steps": steps,
                      "repeats": repeats, "oom_run_steps": oom_steps, "oom_at_step": oom_step + 1,
                      "memory_cap_samples": MEMORY_CAP_SAMPLES, "oom_injection": INJECTION,
                      "plain_checkpoint_every": plain_checkpoint_every},
            "throughput": tp, "oom": [asdict(r) for r in oom]}
