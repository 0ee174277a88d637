"""Training curves: loss per optimizer step and validation Dice per region (TC, WT, ET) per epoch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from .figure import png_figure


def plot_training_curves(losses: Sequence[tuple[int, float]], dice: Mapping[str, Sequence[tuple[int, float]]],
                         out: str | Path, width_px: int = 1000, height_px: int = 400) -> Path:
    """`losses`: (step, loss) pairs; `dice`: region name -> (epoch, Dice) pairs."""
    if not losses and not any(dice.values()):
        raise ValueError("no training metrics to plot")
    with png_figure(out, width_px, height_px, ncols=2) as (fig, (loss_ax, dice_ax)):
        if losses:
            loss_ax.plot([s for s, _ in losses], [v for _, v in losses], color="tab:blue", linewidth=1)
        loss_ax.set_title("Training loss")
        loss_ax.set_xlabel("optimizer step")
        loss_ax.grid(alpha=0.3)
        for region, series in dice.items():
            if series:
                dice_ax.plot([e for e, _ in series], [v for _, v in series], marker="o", label=region)
        dice_ax.set_title("Validation Dice")
        dice_ax.set_xlabel("epoch")
        dice_ax.set_ylim(0, 1)
        dice_ax.grid(alpha=0.3)
        if any(dice.values()):
            dice_ax.legend(fontsize=8)
        fig.tight_layout()
    return Path(out)
