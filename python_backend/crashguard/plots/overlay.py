"""Segmentation overlays: a few axial slices of one MRI channel with the label (and a prediction) on top.

Reads only the slices it draws (nibabel's array proxy), and downsamples them to at most `max_side` pixels,
so a 240x240x155x4 BraTS volume costs a few slices of memory, not the volume.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..util.volumes import load_volume
from .figure import png_figure


def _slice(path: Path, z: int, channel: int | None) -> Any:
    import numpy as np

    proxy = load_volume(path).dataobj
    index: tuple[Any, ...] = (slice(None), slice(None), z) + ((channel,) if len(proxy.shape) == 4 else ())
    return np.asarray(proxy[index], dtype=np.float32)


def _downsample(image: Any, max_side: int) -> Any:
    step = max(1, -(-max(image.shape) // max_side))
    return image[::step, ::step]


def _pick_slices(label_path: Path, count: int) -> list[int]:
    """Evenly spaced slices through the labelled region (one pass over the label, slice by slice)."""
    import numpy as np

    proxy = load_volume(label_path).dataobj
    depth = proxy.shape[2]
    labelled = [z for z in range(depth) if np.any(np.asarray(proxy[:, :, z]))]
    pool = labelled or list(range(depth))
    if len(pool) <= count:
        return pool
    if count == 1:
        return [pool[len(pool) // 2]]
    return [pool[round(i * (len(pool) - 1) / (count - 1))] for i in range(count)]


def plot_segmentation_overlay(image_path: str | Path, label_path: str | Path, out: str | Path,
                              prediction_path: str | Path | None = None, channel: int = 0,
                              slices: Sequence[int] | None = None, count: int = 3, max_side: int = 160,
                              tile_px: int = 260) -> Path:
    import numpy as np

    image_path, label_path = Path(image_path), Path(label_path)
    chosen = list(slices) if slices is not None else _pick_slices(label_path, count)
    rows = 2 if prediction_path is not None else 1
    with png_figure(out, tile_px * len(chosen), tile_px * rows, nrows=rows, ncols=len(chosen),
                    squeeze=False) as (fig, axes):
        for col, z in enumerate(chosen):
            image = _downsample(_slice(image_path, z, channel), max_side)
            overlays = [("label", label_path)] + ([("prediction", Path(prediction_path))] if prediction_path else [])
            for row, (title, path) in enumerate(overlays):
                mask = _downsample(_slice(path, z, None), max_side)
                ax = axes[row][col]
                ax.imshow(image.T, cmap="gray", origin="lower")
                ax.imshow(np.ma.masked_where(mask.T == 0, mask.T), cmap="autumn", alpha=0.5, origin="lower",
                          vmin=0, vmax=3, interpolation="nearest")
                ax.set_title(f"{title}, slice {z}", fontsize=8)
                ax.axis("off")
        fig.tight_layout()
    return Path(out)
