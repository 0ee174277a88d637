"""Real brain anatomy for the realistic sample data: the MNI152 2009a template shipped in the nilearn wheel.

Only three files of the nilearn package are read, through nibabel; nilearn itself is never imported (it pulls
scikit-learn and pandas), so the sidecar and the training stay free of it. `find_spec` locates an installed
package without importing it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ...util.volumes import load_volume

# Task01_BrainTumour's grid: 240 x 240 x 155 voxels of 1 mm (BraTS images in SRI24 space).
TASK01_SHAPE = (240, 240, 155)
TEMPLATE_FILES = {kind: f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz" for kind in ("t1", "gm", "wm")}
INSTALL_HINT = "pip install 'crashguard[realistic]' (or: pip install nilearn)"


class TemplateMissing(RuntimeError):
    """The MNI152 template files are not installed; str() says how to get them."""


def template_dir() -> Path:
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise TemplateMissing(f"the MNI152 brain template comes with the nilearn package, which is not installed: "
                              f"{INSTALL_HINT}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    missing = [name for name in TEMPLATE_FILES.values() if not (folder / name).is_file()]
    if missing:
        raise TemplateMissing(f"{folder} lacks {', '.join(missing)} (an unusual nilearn build?): {INSTALL_HINT}")
    return folder


@dataclass(frozen=True)
class Anatomy:
    """Tissue probabilities on the Task01 grid, uint8 (0..255 = 0..1) to stay small; `brain` is the mask."""

    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    brain: np.ndarray  # bool

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.brain.shape


def fit_to_grid(volume: np.ndarray, shape: tuple[int, ...], keep: tuple[slice, ...]) -> np.ndarray:
    """Centre-pad (or crop) each axis of `volume` to `shape`; where cropping, keep the `keep` slice."""
    out = np.zeros(shape, dtype=volume.dtype)
    src: list[slice] = []
    dst: list[slice] = []
    for axis, (have, want) in enumerate(zip(volume.shape, shape, strict=True)):
        if have <= want:
            start = (want - have) // 2
            src.append(slice(0, have))
            dst.append(slice(start, start + have))
        else:
            lo = keep[axis].start or 0
            lo = min(max(0, lo), have - want)
            src.append(slice(lo, lo + want))
            dst.append(slice(0, want))
    out[tuple(dst)] = volume[tuple(src)]
    return out


@lru_cache(maxsize=1)
def load_anatomy(shape: tuple[int, int, int] = TASK01_SHAPE) -> Anatomy:
    folder = template_dir()
    maps = {kind: np.asanyarray(load_volume(folder / name).dataobj).astype(np.uint8)
            for kind, name in TEMPLATE_FILES.items()}
    # The template is skull-stripped (zero outside the brain). Where it is taller than the grid (z: 189 slices
    # for 155), keep the slab that holds the brain, as BraTS's grid does.
    brain = maps["t1"] > 5
    filled = np.flatnonzero(brain.any(axis=(0, 1)))
    keep = (slice(0), slice(0), slice(int(filled[0]), int(filled[-1]) + 1))
    gm = fit_to_grid(maps["gm"], shape, keep)
    wm = fit_to_grid(maps["wm"], shape, keep)
    mask = fit_to_grid(brain, shape, keep)
    # CSF: what is brain but neither grey nor white matter (ventricles, sulci).
    csf = np.clip(255 - gm.astype(np.int16) - wm.astype(np.int16), 0, 255).astype(np.uint8)
    csf[~mask] = 0
    gm[~mask] = 0
    wm[~mask] = 0
    return Anatomy(gm=gm, wm=wm, csf=csf, brain=mask)
