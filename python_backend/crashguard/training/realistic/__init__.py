"""Realistic Task01 cases: real brain anatomy (MNI152) at Task01's real size, simulated contrasts, grown gliomas.

`crashguard sample-data --realistic` writes them in exactly the Decathlon layout of `sample_data.py` (same
dataset.json, 4D channel-last images), 240 x 240 x 155 x 4 voxels of 1 mm like MSD Task01_BrainTumour, so the
recipe and the cache are exercised at the real scale without the 7 GB download. Per case: the anatomy is
shifted by up to 8 mm in-plane, the tumour grown anew (tumour.py) and the four contrasts simulated
(contrasts.py). Each case has its own RNG stream (seed, case), so the output does not depend on `jobs`.
Memory: about 0.6 GB per job; numpy + nibabel only.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np

from ...util.json_io import json_text
from ..sample_data import dataset_json
from .contrasts import simulate_contrasts
from .template import TASK01_SHAPE, Anatomy, TemplateMissing, load_anatomy
from .tumour import grow_tumour

__all__ = ["TemplateMissing", "make_realistic_case", "write_realistic_dataset"]
MAX_SHIFT_MM = 8


def _shifted(anatomy: Anatomy, dx: int, dy: int) -> Anatomy:
    """The anatomy moved in-plane; the template's margins there are wider than the shift, so nothing wraps."""
    def move(a: np.ndarray) -> np.ndarray:
        return np.roll(a, (dx, dy), axis=(0, 1))

    return replace(anatomy, gm=move(anatomy.gm), wm=move(anatomy.wm), csf=move(anatomy.csf),
                   brain=move(anatomy.brain))


def make_realistic_case(seed: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(image [240, 240, 155, 4] float32, label [240, 240, 155] uint8) of case `index`."""
    rng = np.random.default_rng([seed, index])
    dx, dy = (int(v) for v in rng.integers(-MAX_SHIFT_MM, MAX_SHIFT_MM + 1, 2))
    anatomy = _shifted(load_anatomy(TASK01_SHAPE), dx, dy)
    tumour = grow_tumour(rng, anatomy)
    image = simulate_contrasts(rng, anatomy, tumour)
    label = np.zeros(anatomy.shape, dtype=np.uint8)
    label[tumour.box] = tumour.label
    return image, label


def _write_case(out: Path, name: str, seed: int, index: int) -> str:
    image, label = make_realistic_case(seed, index)
    affine = np.eye(4)
    nib.save(nib.Nifti1Image(image, affine), out / "imagesTr" / f"{name}.nii.gz")
    nib.save(nib.Nifti1Image(label, affine), out / "labelsTr" / f"{name}.nii.gz")
    return name


def write_realistic_dataset(out: Path, cases: int = 12, seed: int = 0, jobs: int | None = None) -> Path:
    """Write `cases` realistic cases into `out` (the task folder) with `jobs` processes; returns `out`."""
    if cases < 2:
        raise ValueError("cases must be at least 2 (training and validation)")
    load_anatomy(TASK01_SHAPE)  # fail early, with the install hint, if the template is missing
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    names = [f"BRATS_{i:03d}" for i in range(1, cases + 1)]
    jobs = max(1, min(jobs or min(2, os.cpu_count() or 1), cases))
    if jobs == 1:
        for index, name in enumerate(names):
            _write_case(out, name, seed, index)
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(_write_case, [out] * cases, names, [seed] * cases, range(cases)))
    (out / "dataset.json").write_text(json_text(dataset_json(names), indent=4), encoding="utf-8")
    return out
