"""Gliomas of realistic size and position grown into the template's anatomy.

A tumour is a whole-tumour region (labels 1-3) of 2-8 % of the brain's voxels (BraTS whole tumours are tens of
millilitres in a ~1.3 l brain), centred in white matter off the midline. Its border is an ellipsoid warped by
smooth noise, and the oedema spreads further along white matter than through grey matter or CSF; the core
(about a third to a half of it) has a necrotic, non-enhancing centre (label 2) inside an enhancing rim (label 3).
Everything is computed in a box around the tumour, so a case costs a few small volumes, not full-size ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fields import smooth_noise
from .template import Anatomy

EDEMA, NON_ENHANCING, ENHANCING = 1, 2, 3


@dataclass(frozen=True)
class Tumour:
    box: tuple[slice, slice, slice]
    label: np.ndarray  # uint8 labels inside `box`
    texture: np.ndarray  # float32 smooth noise inside `box` (intensity texture of the tumour)


def _smallest(values: np.ndarray, count: int) -> float:
    """The `count`-th smallest value (a threshold that keeps `count` voxels)."""
    count = int(np.clip(count, 1, values.size))
    return float(np.partition(values, count - 1)[count - 1])


def _pick_centre(rng: np.random.Generator, anatomy: Anatomy, radius: float) -> np.ndarray:
    """A white-matter voxel off the midline whose surroundings are mostly brain."""
    shape = np.array(anatomy.shape)
    mid_x = shape[0] / 2
    reach = max(3, int(radius * 0.7))
    best = None
    for _ in range(400):
        centre = rng.integers(reach, shape - reach)
        x, y, z = (int(v) for v in centre)
        if anatomy.wm[x, y, z] < 128 or abs(x - mid_x) < 10 + 0.4 * radius:
            continue
        around = anatomy.brain[x - reach:x + reach, y - reach:y + reach, z - reach:z + reach]
        share = float(around.mean())
        if share >= 0.92:
            return centre.astype(np.float32)
        if best is None or share > best[0]:
            best = (share, centre)
    if best is None:
        raise RuntimeError("no white matter off the midline found in the template")
    return best[1].astype(np.float32)


def grow_tumour(rng: np.random.Generator, anatomy: Anatomy, fraction: tuple[float, float] = (0.02, 0.08)
                ) -> Tumour:
    brain_voxels = int(anatomy.brain.sum())
    target = int(rng.uniform(*fraction) * brain_voxels)
    radius = (3 * target / (4 * np.pi)) ** (1 / 3)
    centre = _pick_centre(rng, anatomy, radius)
    half = int(radius * 2.2) + 4
    lo = np.maximum(0, centre.astype(int) - half)
    hi = np.minimum(np.array(anatomy.shape), centre.astype(int) + half)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    shape = tuple(int(b - a) for a, b in zip(lo, hi, strict=True))

    axes = radius * rng.uniform(0.8, 1.25, 3)
    grids = np.meshgrid(*[np.arange(a, b, dtype=np.float32) for a, b in zip(lo, hi, strict=True)],
                        indexing="ij", sparse=True)
    distance = np.sqrt(sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, axes, strict=True)))
    border = smooth_noise(rng, shape, scale=radius / 3)
    core_border = smooth_noise(rng, shape, scale=radius / 5)
    inside = anatomy.brain[box]
    white = anatomy.wm[box].astype(np.float32) / 255

    # Whole tumour: the `target` voxels nearest the centre, with oedema spreading along white matter.
    spread = distance * np.clip(1 + 0.3 * border, 0.6, 1.4) / (0.55 + 0.45 * white)
    whole = inside & (spread <= _smallest(spread[inside], target))
    # Core: a smoother, rounder share of the whole tumour; its centre necrotic, its rim enhancing.
    core_distance = distance * np.clip(1 + 0.2 * core_border, 0.7, 1.3)
    core_cut = _smallest(core_distance[whole], int(rng.uniform(0.3, 0.55) * whole.sum()))
    core = whole & (core_distance <= core_cut)
    necrotic = core & (core_distance * np.clip(1 + 0.15 * border, 0.8, 1.2) <= core_cut * rng.uniform(0.45, 0.7))

    label = np.zeros(shape, dtype=np.uint8)
    label[whole] = EDEMA
    label[core] = ENHANCING
    label[necrotic] = NON_ENHANCING
    return Tumour(box=box, label=label, texture=core_border)  # type: ignore[arg-type]
