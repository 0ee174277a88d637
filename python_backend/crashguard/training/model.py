"""The network: MONAI SegResNet (default) or UNet, 4 MRI channels in, 3 region logits (TC, WT, ET) out."""

from __future__ import annotations

from monai.networks.nets import SegResNet, UNet
from torch import nn

from .config import ModelConfig

IN_CHANNELS = 4
OUT_CHANNELS = 3


def build_model(cfg: ModelConfig, in_channels: int = IN_CHANNELS, out_channels: int = OUT_CHANNELS) -> nn.Module:
    if cfg.name == "segresnet":
        # Group norm (SegResNet's default) is per sample, so a split micro-batch gives the same gradients.
        return SegResNet(spatial_dims=3, init_filters=cfg.init_filters, in_channels=in_channels,
                         out_channels=out_channels, dropout_prob=cfg.dropout or None,
                         blocks_down=(1, 2, 2, 4, 4, 4)[: cfg.levels], blocks_up=(1,) * (cfg.levels - 1))
    return UNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels,
                channels=tuple(cfg.init_filters * 2**i for i in range(cfg.levels)),
                strides=(2,) * (cfg.levels - 1), num_res_units=1, norm="instance", dropout=cfg.dropout)
