"""MONAI transforms for Task01: loading, TC/WT/ET regions from dataset.json's labels, brain crop, normalisation,
foreground-aware crops.

The deterministic part is what CacheDataset keeps in RAM: images float32, region masks uint8 (a quarter of
float32: 27 instead of 107 MB for a real case), cropped to the brain's bounding box (real and realistic Task01
volumes are ~60 % air), as plain tensors (no MONAI metadata, which random transforms would otherwise append to).
The random part runs per sample and is seeded per (seed, epoch, index) by data.py, so a resumed run sees exactly
the samples the interrupted one would have.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    CropForegroundd,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    MapTransform,
    NormalizeIntensityd,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandScaleIntensityd,
    RandShiftIntensityd,
    RandSpatialCropd,
    SpatialPadd,
)

REGIONS = ("TC", "WT", "ET")


def region_labels(labels: Mapping[str, str]) -> dict[str, tuple[int, ...]]:
    """TC={non-enhancing, enhancing}, WT={oedema, non-enhancing, enhancing}, ET={enhancing}, by label *name*.

    MONAI's ConvertToMultiChannelBasedOnBratsClassesd assumes BraTS numbering (ET=4) and is wrong for MSD.
    """
    edema = non_enh = enh = None
    for value, name in labels.items():
        text = name.lower().replace("_", "-").replace(" ", "-")
        if "edema" in text or "oedema" in text:
            edema = int(value)
        elif "non-enhancing" in text or "necrotic" in text:
            non_enh = int(value)
        elif "enhancing" in text:
            enh = int(value)
    if edema is None or non_enh is None or enh is None:
        raise ValueError(f"dataset.json labels {dict(labels)} lack edema / non-enhancing / enhancing")
    return {"TC": (non_enh, enh), "WT": (edema, non_enh, enh), "ET": (enh,)}


class RegionsFromLabelsd(MapTransform):
    """Label map [1, X, Y, Z] -> one binary channel per region, in REGIONS order."""

    def __init__(self, keys: KeysCollection, regions: Mapping[str, Sequence[int]]) -> None:
        super().__init__(keys)
        self.regions = [tuple(regions[name]) for name in REGIONS]

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            label = d[key][0]
            channels = [torch.isin(label, torch.as_tensor(values, dtype=label.dtype)) for values in self.regions]
            stacked = torch.stack(channels).to(torch.uint8)
            d[key] = MetaTensor(stacked, meta=d[key].meta) if isinstance(d[key], MetaTensor) else stacked
        return d


def deterministic_transforms(regions: Mapping[str, Sequence[int]], roi_size: Sequence[int],
                             crop_to_brain: bool = True) -> Compose:
    """Load, channel-first, regions (uint8), crop to the brain, normalise, pad to at least the ROI: the cacheable
    part. The brain is where any channel is non-zero (Task01 is skull-stripped, air is exactly 0)."""
    brain = [CropForegroundd(keys=["image", "label"], source_key="image", allow_smaller=True)] if crop_to_brain else []
    return Compose([
        LoadImaged(keys=["image", "label"], image_only=True),
        EnsureChannelFirstd(keys=["image", "label"]),
        EnsureTyped(keys=["image", "label"], dtype=(torch.float32, torch.uint8), track_meta=True),
        RegionsFromLabelsd(keys="label", regions=regions),
        *brain,
        NormalizeIntensityd(keys="image", nonzero=True, channel_wise=True),
        SpatialPadd(keys=["image", "label"], spatial_size=tuple(roi_size)),
        EnsureTyped(keys=["image", "label"], track_meta=False),
    ])


def crop_transform(roi_size: Sequence[int], crop: str = "foreground", foreground_ratio: float = 1 / 3) -> Any:
    """One training crop of `roi_size` from a cached item.

    "foreground": like nnU-Net, a share `foreground_ratio` of the crops is centred on a tumour voxel (any
    region), the others on a random non-tumour voxel of the (brain-cropped) volume; the tumour is a few percent
    of the brain, so uniform crops would mostly show healthy tissue. "uniform": anywhere (the original recipe).
    """
    roi = tuple(roi_size)
    if crop == "uniform":
        return RandSpatialCropd(keys=["image", "label"], roi_size=roi, random_size=False)
    return RandCropByPosNegLabeld(keys=["image", "label"], label_key="label", spatial_size=roi,
                                  pos=foreground_ratio, neg=1.0 - foreground_ratio, num_samples=1)


def random_transforms(roi_size: Sequence[int], crop: str = "foreground", foreground_ratio: float = 1 / 3
                      ) -> Compose:
    return Compose([
        crop_transform(roi_size, crop, foreground_ratio),
        RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=0),
        RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=1),
        RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=2),
        RandScaleIntensityd(keys="image", factors=0.1, prob=1.0),
        RandShiftIntensityd(keys="image", offsets=0.1, prob=1.0),
    ])


def item_nbytes(item: Any) -> int:
    """Bytes held by the tensors/arrays of one (transformed) item."""
    if isinstance(item, torch.Tensor):
        return item.element_size() * item.nelement()
    if isinstance(item, np.ndarray):
        return int(item.nbytes)
    if isinstance(item, Mapping):
        return sum(item_nbytes(v) for v in item.values())
    if isinstance(item, (list, tuple)):
        return sum(item_nbytes(v) for v in item)
    return 0
