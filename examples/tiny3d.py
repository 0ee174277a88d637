"""The examples' stand-in for your model and data: a small 3D segmentation net and synthetic volumes.

Each sample is a 48³ single-channel volume (`size` changes it) with a bright ball and its mask, made from its index
alone (no global RNG), so a run resumed at step N sees exactly the batches an uninterrupted run would. The net's
activations are large and its compute light, so an out-of-memory is easy to provoke and a step is quick on a CPU.
"""

from __future__ import annotations

import torch
from torch import nn

SIZE = 48
SAMPLES = 16


class TinySeg3d(nn.Module):
    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv3d(1, channels, 3, padding=1), nn.GroupNorm(4, channels), nn.ReLU(),
            nn.Dropout3d(0.1),  # draws random numbers: a resume must restore the RNG to continue exactly
            nn.Conv3d(channels, channels, 1), nn.ReLU(), nn.Conv3d(channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_model(seed: int = 0) -> TinySeg3d:
    torch.manual_seed(seed)
    return TinySeg3d()


def sample(index: int, size: int = SIZE) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + index)
    centre = torch.randint(size // 4, size - size // 4, (3,), generator=g).float()
    radius = size / 8 + size / 8 * torch.rand((), generator=g)
    axis = torch.arange(size, dtype=torch.float32)
    zz, yy, xx = torch.meshgrid(axis, axis, axis, indexing="ij")
    mask = (((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2) < radius**2).float()
    image = mask * 2.0 + 0.5 * torch.randn((size, size, size), generator=g)
    return {"image": image[None], "label": mask[None], "id": torch.tensor(index)}  # id: which sample it is


class SyntheticVolumes(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    def __init__(self, size: int = SIZE) -> None:
        self.size = size

    def __len__(self) -> int:
        return SAMPLES

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return sample(index, self.size)


def epoch_order(epoch: int, seed: int = 0) -> list[int]:
    """The shuffled sample order of an epoch, from the epoch alone (a resumed run finds its place)."""
    return torch.randperm(SAMPLES, generator=torch.Generator().manual_seed(seed + epoch)).tolist()


def batch_for(step: int, batch_size: int = 4, size: int = SIZE) -> dict[str, torch.Tensor]:
    """The batch of optimizer step `step` (0-based) for a plain loop."""
    per_epoch = SAMPLES // batch_size
    order = epoch_order(step // per_epoch)
    start = (step % per_epoch) * batch_size
    samples = [sample(i, size) for i in order[start:start + batch_size]]
    return {k: torch.stack([s[k] for s in samples]) for k in ("image", "label", "id")}


LOSS = nn.BCEWithLogitsLoss()
