"""The RAM budget of a training process, split between the cache and a *measured* working set.

`memory.ram_budget_gb` is the peak RSS the whole process may reach. Before the cache is filled, one case is
loaded and transformed, one real training step runs at the configured micro-batch (model, loss, backward, AdamW's
first step with its state), and one case is validated by sliding window; the peak RSS of each (the kernel's
high-water mark, exact) is the process's working set without a cache. The cache gets the budget minus that
working set (plus a margin for allocator slack), so the cache and the working set together stay within the
budget, and the cache uses what the working set leaves: a run's peak RSS ends close to the budget, not far below
or above it. The measurement costs one step and one validation case at start.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..guard.cleanup import emergency_cleanup
from ..guard.failures import is_oom
from ..monitor.host import read_ram
from ..monitor.peak import PeakRssTracker
from ..monitor.processes import own_rss
from ..step.precision import precision_for
from .config import TrainingConfig
from .loss import build_loss
from .model import build_model
from .sliding import WindowPlan, guarded_sliding_window
from .transforms import deterministic_transforms, item_nbytes, random_transforms

log = logging.getLogger(__name__)
MARGIN = 0.10  # of the working set above the baseline: allocator slack, thread-local buffers


@dataclass(frozen=True)
class WorkingSet:
    """Absolute RSS peaks (bytes) of this process in each phase, measured without a cache."""

    baseline: int  # before the measurement (interpreter, torch, MONAI)
    load: int  # loading + deterministic transforms of one case
    train: int  # one training step at the configured micro-batch, model and optimizer state included
    validate: int  # sliding-window validation of one case
    item_bytes: int  # one cached item
    failed: str | None = None  # an OOM during the measurement: the cache gets nothing

    def peak(self, load_threads: int, concurrent_loads: int) -> int:
        """The highest RSS the phases reach without a cache: the cache is filled by `load_threads` threads;
        during training `concurrent_loads` worker threads may load uncached cases while a step runs."""
        load = self.load - self.baseline
        highest = max(self.baseline + load * max(1, load_threads), self.train + load * concurrent_loads,
                      self.validate + load)
        return int(highest + MARGIN * (highest - self.baseline))


def resolve_budget(config: TrainingConfig, local_processes: int = 1) -> int:
    """memory.ram_budget_gb in bytes; 'auto': available RAM minus the headroom, shared by this machine's ranks."""
    mem = config.memory
    if mem.ram_budget_gb != "auto":
        return int(float(mem.ram_budget_gb) * 2**30)
    available = max(0, read_ram().available - int(mem.ram_headroom_gb * 2**30))
    return own_rss() + available // max(1, local_processes)


def measure_working_set(config: TrainingConfig, regions: Mapping[str, Sequence[int]], entry: Mapping[str, str],
                        device: torch.device) -> WorkingSet:
    """Run one case through the phases of a run (see the module doc) and read each phase's peak RSS."""
    train = config.train
    tracker = PeakRssTracker()
    baseline = own_rss()
    failed: str | None = None
    load = train_peak = validate = baseline
    item: dict[str, Any] | None = None
    try:
        tracker.start()
        item = deterministic_transforms(regions, train.roi_size, config.data.crop_to_brain)(dict(entry))
        load = tracker.stop()[1]
        tracker.start()
        train_peak = _one_step(config, item, device)
        train_peak = max(train_peak, tracker.stop()[1])
        tracker.start()
        _one_validation(config, item, device)
        validate = tracker.stop()[1]
    except Exception as exc:
        if not is_oom(exc):
            raise
        failed = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
    item_bytes = item_nbytes(item) if item is not None else 0
    del item
    emergency_cleanup()
    return WorkingSet(baseline, load, train_peak, validate, item_bytes, failed)


def _one_step(config: TrainingConfig, item: dict[str, Any], device: torch.device) -> int:
    train = config.train
    crop = random_transforms(train.roi_size, train.crop, train.foreground_ratio)
    crop.set_random_state(seed=train.seed)
    samples = [crop(dict(item)) for _ in range(train.micro_batch)]
    samples = [s[0] if isinstance(s, list) else s for s in samples]
    x = torch.stack([torch.as_tensor(s["image"]) for s in samples]).to(device)
    y = torch.stack([torch.as_tensor(s["label"]) for s in samples]).to(device)
    model = build_model(config.model).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.learning_rate, weight_decay=train.weight_decay)
    with precision_for(train.amp, train.amp_dtype, device).context(device.type):
        loss = build_loss(train.loss)(model(x), y)
    loss.backward()
    optimizer.step()  # AdamW allocates its state on the first step
    return own_rss()


def _one_validation(config: TrainingConfig, item: dict[str, Any], device: torch.device) -> None:
    from .validation import region_dice

    train = config.train
    precision = precision_for(train.amp, train.amp_dtype, device)
    model = build_model(config.model).to(device).eval()
    image = torch.as_tensor(item["image"]).as_subclass(torch.Tensor).clone()[None].to(device)
    label = torch.as_tensor(item["label"]).as_subclass(torch.Tensor).clone()[None]
    with torch.no_grad():
        logits = guarded_sliding_window(image, model, train.roi_size,
                                        WindowPlan(train.sw_batch_size, train.sw_overlap),
                                        precision, lambda _: None)
        region_dice(logits, label)


@dataclass(frozen=True)
class MemoryPlan:
    budget: int
    working_set: WorkingSet
    working_peak: int  # WorkingSet.peak(...) for this run's threads

    @property
    def cache_bytes(self) -> int:
        return 0 if self.working_set.failed else max(0, self.budget - self.working_peak)

    def describe(self) -> str:
        ws = self.working_set
        mib = 2**20
        return (f"RAM budget {self.budget / mib:.0f} MiB: working set {self.working_peak / mib:.0f} MiB measured "
                f"(baseline {ws.baseline / mib:.0f}, load {ws.load / mib:.0f}, step {ws.train / mib:.0f}, "
                f"validation {ws.validate / mib:.0f} MiB peak, +{MARGIN:.0%} margin), cache "
                f"{self.cache_bytes / mib:.0f} MiB" + (f"; measurement hit {ws.failed}" if ws.failed else ""))

    def as_fields(self) -> dict[str, int]:
        ws = self.working_set
        return {"ram_budget": self.budget, "working_set": self.working_peak, "cache_budget": self.cache_bytes,
                "baseline_rss": ws.baseline, "load_peak": ws.load, "step_peak": ws.train,
                "validation_peak": ws.validate, "item_bytes": ws.item_bytes}
