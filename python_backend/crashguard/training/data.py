"""Task01 data the safe way: a cache sized to the RAM budget, workers that never copy it, reproducible samples.

- cache_rate="auto": one item is run through the deterministic transforms and measured; as many items are
  cached as fit in the cache's budget (run.py passes the RAM budget minus the measured working set,
  memory_plan.py; without one, available RAM minus the headroom). The choice is logged.
- Workers are threads (MONAI ThreadDataLoader with use_thread_workers): worker *processes* each end up with
  their own copy of the cache as refcount writes touch its pages (MONAI #5930); threads share it.
- Random augmentation is seeded per (seed, epoch, sample index) and the sampler's order per (seed, epoch), so
  a run resumed mid-epoch sees exactly the samples the interrupted run would have seen.
"""

from __future__ import annotations

import copy
import fcntl
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.apps import DecathlonDataset, download_and_extract
from monai.data import DataLoader, ThreadDataLoader
from monai.transforms import Compose, EnsureTyped, Lambdad

from ..monitor.host import read_ram
from .check import DataError, read_dataset_json
from .memory_plan import MemoryPlan
from .transforms import deterministic_transforms, item_nbytes, random_transforms, region_labels

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachePlan:
    train_rate: float
    val_rate: float
    cached_items: int
    total_items: int
    item_bytes: int
    budget_bytes: int | None  # None when the rate was given, not computed
    source: str = "available RAM minus headroom"

    def describe(self) -> str:
        size = f"{self.cached_items} x {self.item_bytes / 2**20:.1f} MiB"
        if self.budget_bytes is None:
            return f"cache: {size} (rate set in config)"
        return (f"cache auto: {size} of {self.total_items} items fit in the budget of "
                f"{self.budget_bytes / 2**20:.0f} MiB ({self.source})")


def plan_cache(cache_rate: float | str, item_bytes: int, n_train: int, n_val: int, headroom_bytes: int,
               available_bytes: int | None = None, budget_bytes: int | None = None) -> CachePlan:
    """Training items first (they are read every epoch), then validation items, within the budget:
    `budget_bytes` for the cache if given, else available RAM minus `headroom_bytes`."""
    total = n_train + n_val
    if cache_rate != "auto":
        rate = float(cache_rate)
        cached = round(rate * n_train) + round(rate * n_val)
        return CachePlan(rate, rate, cached, total, item_bytes, None)
    source = "RAM budget minus the measured working set"
    if budget_bytes is None:
        available = read_ram().available if available_bytes is None else available_bytes
        budget_bytes = max(0, available - headroom_bytes)
        source = "available RAM minus headroom"
    budget = max(0, budget_bytes)
    fit = min(total, budget // max(1, item_bytes))
    train_n = min(fit, n_train)
    val_n = min(fit - train_n, n_val)
    return CachePlan(train_n / n_train if n_train else 0.0, val_n / n_val if n_val else 0.0, int(fit), total,
                     item_bytes, budget, source)


def ensure_downloaded(root: Path, task: str, url: str | None = None) -> None:
    """MONAI's own Decathlon download (the ~7 GB tar, md5-checked). Offline it fails with a clear message.

    One process at a time (an exclusive lock file in `root`, shared by every run on this data folder); the
    archive is extracted into a temporary folder and renamed into place, so a run killed mid-extraction leaves
    no half-filled task folder that a later run would take for a complete one.
    """
    if (root / task).is_dir():
        return
    url = url or DecathlonDataset.resource[task]
    root.mkdir(parents=True, exist_ok=True)
    with (root / f".{task}.download.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process downloading: wait for it, then find the folder
        if (root / task).is_dir():
            return
        partial = Path(tempfile.mkdtemp(prefix=f".{task}.partial-", dir=root))
        try:
            download_and_extract(url=url, filepath=root / f"{task}.tar", output_dir=partial,
                                 hash_val=DecathlonDataset.md5[task], hash_type="md5", progress=False)
            if not (partial / task).is_dir():
                raise DataError(f"the archive from {url} holds no {task} folder")
            os.replace(partial / task, root / task)
        except DataError:
            raise
        except Exception as exc:
            reason = " ".join(str(exc).split())[:160]
            raise DataError(f"could not download {task} from {url}: {type(exc).__name__}: {reason} "
                            f"(no network? fetch it elsewhere and extract it under {root})") from None
        finally:
            shutil.rmtree(partial, ignore_errors=True)


def _seed_for(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class SeededAugment(torch.utils.data.Dataset):
    """Applies the random transforms to a cached item with an RNG seeded per (seed, epoch, index).

    The cached item is never copied whole (a real case is ~65 MB after the brain crop): the crop comes first and
    takes a view, the crop alone is cloned (`random_augment`), and no later transform writes in place.
    """

    def __init__(self, base: Any, transform: Compose, seed: int) -> None:
        self.base = base
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self._local = threading.local()  # one transform copy per worker thread: set_random_state mutates it

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> Any:
        transform = getattr(self._local, "transform", None)
        if transform is None:
            transform = self._local.transform = copy.deepcopy(self.transform)
        transform.set_random_state(seed=_seed_for(self.seed, self.epoch, index))
        sample = transform(dict(self.base[index]))  # a shallow copy: the transforms replace values, never edit them
        item = sample[0] if isinstance(sample, list) else sample  # RandCropByPosNegLabeld yields a list
        item["case"] = index  # which training case: each step's record names them (an exact resume sees the same)
        return item


def epoch_order(seed: int, epoch: int, size: int) -> list[int]:
    """The sample order of one epoch: a permutation that depends on (seed, epoch) only, so a resumed run and
    every rank of a distributed one agree on it."""
    rng = np.random.default_rng([seed, epoch])
    return [int(i) for i in rng.permutation(size)]


class EpochSampler(torch.utils.data.Sampler[int]):
    """A permutation per (seed, epoch); `start` skips the samples an interrupted epoch already used."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def order(self) -> list[int]:
        return epoch_order(self.seed, self.epoch, self.size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.order()[self.start:])

    def __len__(self) -> int:
        return self.size - self.start


class ShardedEpochSampler(torch.utils.data.DistributedSampler[int]):
    """The distributed sampler: the same (seed, epoch) permutation as EpochSampler, cut into optimizer steps
    of `step_batch` samples; each rank yields its `step_batch / world_size` share of every step.

    torch's DistributedSampler cannot skip the samples an interrupted epoch already used, and interleaves ranks
    over the whole epoch; this keeps the global batch of every step equal to the single-process run's (so a
    run's steps do not depend on the world size), and `start` resumes mid-epoch on every rank.
    """

    def __init__(self, size: int, seed: int, step_batch: int, rank: int, world_size: int) -> None:
        if step_batch % world_size:
            raise DataError(f"effective batch {step_batch} does not divide by the world size {world_size}")
        indices: Any = range(size)  # typed as a Dataset, the sampler's "dataset" is only asked its len()
        super().__init__(indices, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.size = size
        self.step_batch = step_batch
        self.share = step_batch // world_size
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def order(self) -> list[int]:
        return epoch_order(self.seed, self.epoch, self.size)

    def __iter__(self) -> Iterator[int]:
        order = self.order()
        steps = self.size // self.step_batch
        for first in range(self.start, steps * self.step_batch, self.step_batch):
            own = first + self.rank * self.share
            yield from order[own:own + self.share]

    def __len__(self) -> int:
        return max(0, (self.size // self.step_batch) * self.step_batch - self.start) // self.num_replicas


@dataclass
class DecathlonData:
    train_loader: Any
    val_loader: Any
    train_set: SeededAugment
    sampler: EpochSampler | ShardedEpochSampler
    regions: dict[str, tuple[int, ...]]
    cache: CachePlan
    workers: int
    step_batch: int = 0  # samples per optimizer step over all ranks (the loader's batch is this rank's share)
    memory: MemoryPlan | None = None  # the RAM budget and measured working set behind the cache (run.py)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_set) // (self.step_batch or self.train_loader.batch_size)

    def start_epoch(self, epoch: int, batches_done: int = 0) -> None:
        self.train_set.set_epoch(epoch)
        self.sampler.set_epoch(epoch, batches_done * (self.step_batch or self.train_loader.batch_size))


def _loader(dataset: Any, batch_size: int, workers: int, sampler: Any = None) -> Any:
    if workers > 0:
        return ThreadDataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                                use_thread_workers=True, drop_last=sampler is not None)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=0,
                      drop_last=sampler is not None)


def random_augment(roi_size: Sequence[int], crop: str = "foreground", foreground_ratio: float = 1 / 3) -> Compose:
    """The per-sample transforms: crop, clone the crop (never the cached volume), flips and intensity jitter."""
    transforms = random_transforms(roi_size, crop, foreground_ratio).transforms
    return Compose([transforms[0], Lambdad(keys=["image", "label"], func=lambda t: t.clone()), *transforms[1:],
                    EnsureTyped(keys=["image", "label"], track_meta=False)])


def load_monai_decathlon_safe(root_dir: str | Path, task: str = "Task01_BrainTumour", batch_size: int = 2,
                              cache_rate: float | str = 0.1, roi_size: Sequence[int] = (48, 48, 48),
                              workers: int = 0, val_fraction: float = 0.25, seed: int = 0,
                              download: bool = False, ram_headroom_gb: float = 2.0, rank: int = 0,
                              world_size: int = 1, local_world_size: int = 1, crop_to_brain: bool = True,
                              crop: str = "foreground", foreground_ratio: float = 1 / 3,
                              cache_budget_bytes: int | None = None) -> DecathlonData:
    """Training and validation loaders for a Decathlon task folder under `root_dir` (the seed's function).

    `batch_size` is the effective batch: every optimizer step gets exactly this many samples (drop_last).
    With `world_size` > 1 (one process per rank), this rank's loader yields its share of each step's samples
    and of the validation cases; the "auto" cache budget is split between the `local_world_size` processes
    of this machine, each of which holds its own cache. `cache_budget_bytes` (this process's cache, from
    memory_plan.py) replaces the available-RAM-minus-headroom budget of cache_rate "auto".
    """
    root = Path(root_dir)
    if download:
        ensure_downloaded(root, task)
    task_dir = root / task
    if not task_dir.is_dir():
        raise DataError(f"{task_dir} does not exist (run crashguard sample-data or set data.download: true)")
    meta = read_dataset_json(task_dir)
    regions = region_labels(meta["labels"])
    deterministic = deterministic_transforms(regions, roi_size, crop_to_brain)

    def dataset(section: str, rate: float) -> DecathlonDataset:
        return DecathlonDataset(root_dir=root, task=task, section=section, transform=deterministic,
                                download=False, seed=seed, val_frac=val_fraction, cache_rate=rate,
                                num_workers=max(1, workers), progress=False, copy_cache=False)

    # Cache nothing first, to learn the split and measure one item.
    probe_train, probe_val = dataset("training", 0.0), dataset("validation", 0.0)
    if len(probe_train) < batch_size:
        raise DataError(f"{task_dir}: {len(probe_train)} training cases after the validation split, fewer than "
                        f"the effective batch {batch_size}")
    item_bytes = item_nbytes(probe_train[0]) if cache_rate == "auto" else 0
    available = None
    if cache_rate == "auto" and local_world_size > 1 and cache_budget_bytes is None:
        headroom = int(ram_headroom_gb * 2**30)
        available = headroom + max(0, read_ram().available - headroom) // local_world_size
    plan = plan_cache(cache_rate, item_bytes, len(probe_train), len(probe_val), int(ram_headroom_gb * 2**30),
                      available, cache_budget_bytes)
    log.info("%s", plan.describe())
    train_base = dataset("training", plan.train_rate) if plan.train_rate > 0 else probe_train
    val_base = dataset("validation", plan.val_rate) if plan.val_rate > 0 else probe_val

    train_set = SeededAugment(train_base, random_augment(roi_size, crop, foreground_ratio), seed)
    sampler: EpochSampler | ShardedEpochSampler
    if world_size > 1:
        sampler = ShardedEpochSampler(len(train_set), seed, batch_size, rank, world_size)
    else:
        sampler = EpochSampler(len(train_set), seed)
    val_set: torch.utils.data.Dataset = _PlainTensors(val_base)
    if world_size > 1:  # each rank validates every world_size-th case; the loop sums the Dice over ranks
        val_set = torch.utils.data.Subset(val_set, range(rank, len(val_base), world_size))
    return DecathlonData(
        train_loader=_loader(train_set, batch_size // world_size, workers, sampler),
        val_loader=_loader(val_set, 1, workers),
        train_set=train_set, sampler=sampler, regions=regions, cache=plan, workers=workers, step_batch=batch_size,
    )


class _PlainTensors(torch.utils.data.Dataset):
    """Validation items without MONAI metadata (cheaper collation; the loop needs only the tensors)."""

    def __init__(self, base: Any) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.base[index]
        return {k: torch.as_tensor(item[k]).as_subclass(torch.Tensor).clone() for k in ("image", "label")}
