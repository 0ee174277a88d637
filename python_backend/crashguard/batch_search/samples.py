"""Inputs for the probes: real training crops from the configured dataset (the same transforms as training).

Memory and time depend on the shapes, so where the dataset is missing, random tensors of the same shape stand in
(and find-batch says so).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ..training.check import read_dataset_json
from ..training.config import TrainingConfig
from ..training.model import IN_CHANNELS, OUT_CHANNELS
from ..training.transforms import deterministic_transforms, random_transforms, region_labels

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CropPool:
    images: torch.Tensor  # (n, 4, *roi)
    labels: torch.Tensor  # (n, 3, *roi)
    source: str  # where the crops came from, for the report

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.arange(size) % self.images.shape[0]
        return self.images[index], self.labels[index]


def crop_pool(config: TrainingConfig, count: int = 4) -> CropPool:
    roi = config.train.roi_size
    task_dir = config.data.task_dir
    if (task_dir / "dataset.json").is_file():
        dataset = read_dataset_json(task_dir)
        regions = region_labels(dataset["labels"])
        train = config.train
        load = deterministic_transforms(regions, roi, config.data.crop_to_brain)
        crop = random_transforms(roi, train.crop, train.foreground_ratio)
        crop.set_random_state(seed=train.seed)
        entries = dataset["training"][:count]
        items = [crop(load({"image": str(task_dir / e["image"]), "label": str(task_dir / e["label"])}))
                 for e in entries]
        items = [i[0] if isinstance(i, list) else i for i in items]  # RandCropByPosNegLabeld yields a list
        images = torch.stack([torch.as_tensor(i["image"]).float() for i in items])
        labels = torch.stack([torch.as_tensor(i["label"]) for i in items])  # uint8 region masks, as cached
        return CropPool(images, labels, f"{len(items)} training crops of {task_dir}")
    log.warning("%s not found: probing with random tensors of the same shape", task_dir)
    generator = torch.Generator().manual_seed(config.train.seed)
    images = torch.rand((count, IN_CHANNELS, *roi), generator=generator)
    labels = (torch.rand((count, OUT_CHANNELS, *roi), generator=generator) > 0.5).to(torch.uint8)
    return CropPool(images, labels, "random tensors (dataset not found)")
