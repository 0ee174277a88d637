"""The data position in a checkpoint, for loops whose data loader cannot tell it: a sampler that can start an epoch
where a checkpoint left it.

A plain loop or a Lightning fit uses torchdata's `StatefulDataLoader`, whose own state_dict() is the position (give
it to `guarded_run(data=...)`; Lightning saves it in its checkpoint by itself). PyTorch-Ignite engines (MONAI's
SupervisedTrainer among them) restart the interrupted epoch's data from its first batch when they resume mid-epoch,
so samples are trained twice and the rest of the epoch skipped. `ResumableSampler` fixes that: each epoch's order is
a function of (seed, epoch) alone, the position is the count of samples the completed steps consumed (told by
whoever drives the steps: `advance`), and after `load_state_dict` the next epoch it is iterated for starts at that
position. Its state is part of every checkpoint (the MONAI handler gives it to the run's lifecycle as `data`).

The count comes from the completed steps, never from the sampler's own iteration: a DataLoader's workers draw
indices batches ahead of training.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

import torch


class ResumableSampler(torch.utils.data.Sampler[int]):
    """Samples `data_source` (a dataset, or its length) in an order fixed by (seed, epoch), shuffled or not; the
    driver calls `set_epoch(epoch)` before each epoch's iteration (0-based) and `advance(samples)` after each
    completed step."""

    def __init__(self, data_source: Sized | int, shuffle: bool = True, seed: int = 0) -> None:
        self.size = data_source if isinstance(data_source, int) else len(data_source)
        if isinstance(self.size, bool) or self.size < 0:
            raise ValueError(f"ResumableSampler needs a length of at least 0, got {self.size!r}")
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.consumed = 0  # samples of `epoch` the completed steps used
        self._start = 0  # where the next iteration of `epoch` starts (a resumed position)

    def __len__(self) -> int:
        return self.size  # an epoch's length (an engine's epoch_length), also the epoch resumed part-way

    def order(self, epoch: int) -> list[int]:
        """The sample indices of an epoch, in the order they are drawn."""
        if not self.shuffle:
            return list(range(self.size))
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.size, generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        start, self._start = self._start, 0  # only the first iteration after a resume starts part-way
        return iter(self.order(self.epoch)[start:])

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.consumed, self._start = epoch, 0, 0

    def advance(self, samples: int) -> None:
        """A step completed and consumed `samples` samples of this epoch."""
        self.consumed += samples

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "consumed": self.consumed, "seed": self.seed, "shuffle": self.shuffle,
                "size": self.size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue where a checkpoint left off; refuses a state of another dataset or order."""
        for key, mine in (("seed", self.seed), ("shuffle", self.shuffle), ("size", self.size)):
            if state.get(key) != mine:
                raise ValueError(f"the checkpoint's data position is for {key}={state.get(key)!r}, this sampler "
                                 f"has {mine!r}: resuming would not see the same samples")
        epoch, consumed = int(state["epoch"]), int(state["consumed"])
        if not 0 <= consumed <= self.size or epoch < 0:
            raise ValueError(f"the checkpoint's data position (epoch {epoch}, sample {consumed}) is out of range")
        self.epoch, self.consumed, self._start = epoch, consumed, consumed


__all__ = ["ResumableSampler"]
