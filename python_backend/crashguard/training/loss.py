"""The training loss over the three region channels (TC, WT, ET), each a sigmoid (regions overlap).

- "dice_ce" (default): soft Dice + binary cross-entropy per voxel. Dice alone barely penalises false positives
  in a crop without tumour: with `smooth_nr=0` its value is 1.0 whatever the prediction and its gradient exactly 0;
  with a small smoothing term the gradient is ~smooth/(sum of predictions)^2, still ~0. The cross-entropy term
  penalises every false-positive voxel, which the background crops of foreground-aware sampling need.
- "dice_focal": soft Dice + sigmoid focal loss (gamma 2), for very small structures.
- "dice": the original recipe (Dice with smooth_nr=0), kept to compare against.

MONAI's DiceCELoss cannot be used as it is: for more than one channel it takes a *softmax* cross-entropy, which
assumes exclusive classes; TC, WT and ET are nested. Both terms are means over samples and voxels, so a
micro-batch's loss weighted by its share of the step gives the same gradients however the step is split.
"""

from __future__ import annotations

from typing import Literal

import torch
from monai.losses import DiceLoss, FocalLoss
from torch import nn

LossName = Literal["dice_ce", "dice_focal", "dice"]


class DiceWithVoxelLoss(nn.Module):
    def __init__(self, voxel: nn.Module, voxel_weight: float = 1.0) -> None:
        super().__init__()
        self.dice = DiceLoss(sigmoid=True, smooth_nr=1e-5, smooth_dr=1e-5)
        self.voxel = voxel
        self.voxel_weight = voxel_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.to(logits.dtype)  # the cache holds uint8 region masks
        return self.dice(logits, target) + self.voxel_weight * self.voxel(logits.float(), target.float())


class PlainDice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dice = DiceLoss(sigmoid=True, smooth_nr=0.0, smooth_dr=1e-5, squared_pred=True)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.dice(logits, target.to(logits.dtype))


def build_loss(name: LossName = "dice_ce") -> nn.Module:
    if name == "dice_ce":
        return DiceWithVoxelLoss(nn.BCEWithLogitsLoss())
    if name == "dice_focal":
        return DiceWithVoxelLoss(FocalLoss(gamma=2.0, use_softmax=False))
    if name == "dice":
        return PlainDice()
    raise ValueError(f"unknown loss {name!r}")
