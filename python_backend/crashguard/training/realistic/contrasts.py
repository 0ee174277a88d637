"""The four MRI contrasts of Task01 (FLAIR, T1w, t1gd, T2w) simulated from tissue maps and a tumour.

Each voxel mixes the mean intensities of its tissues by their probabilities (partial volume), so the cortex,
white matter and ventricles look as they do on real scans: white matter bright on T1, CSF bright on T2 and dark
on FLAIR, grey matter brighter than white on FLAIR. Oedema is bright on FLAIR/T2, the necrotic core dark on T1
and bright on T2, the rim bright on t1gd. Per case the means are jittered, each channel gets its own smooth
multiplicative bias field, Rician noise and scanner scale; the background is 0 as in skull-stripped BraTS.
"""

from __future__ import annotations

import numpy as np

from .fields import coarse_field
from .template import Anatomy
from .tumour import EDEMA, ENHANCING, NON_ENHANCING, Tumour

# Relative mean intensity per tissue, channels (FLAIR, T1w, t1gd, T2w).
TISSUE = {
    "gm": (0.75, 0.65, 0.68, 0.60),
    "wm": (0.60, 1.00, 1.00, 0.42),
    "csf": (0.12, 0.25, 0.27, 1.00),
}
LESION = {
    EDEMA: (1.00, 0.55, 0.58, 0.85),
    NON_ENHANCING: (0.55, 0.30, 0.35, 0.95),
    ENHANCING: (0.85, 0.60, 1.45, 0.70),
}
CHANNELS = 4


def _soften(mask: np.ndarray) -> np.ndarray:
    """A 3-voxel box blur: tumour borders blend into the tissue over ~1 mm, as partial volume does."""
    soft: np.ndarray = mask.astype(np.float32)
    for axis in range(soft.ndim):
        padded = np.pad(soft, [(1, 1) if a == axis else (0, 0) for a in range(soft.ndim)], mode="edge")
        lo = [slice(None)] * soft.ndim
        mid = [slice(None)] * soft.ndim
        hi = [slice(None)] * soft.ndim
        lo[axis], mid[axis], hi[axis] = slice(0, -2), slice(1, -1), slice(2, None)
        soft = (padded[tuple(lo)] + padded[tuple(mid)] + padded[tuple(hi)]) / 3
    return soft


def simulate_contrasts(rng: np.random.Generator, anatomy: Anatomy, tumour: Tumour) -> np.ndarray:
    """image [X, Y, Z, 4] float32 with integer values (scanner units), 0 outside the brain."""
    shape = anatomy.shape
    image = np.zeros((*shape, CHANNELS), dtype=np.float32)
    texture = 1 + 0.03 * coarse_field(rng, shape, (24, 24, 16))  # healthy tissue is not perfectly flat
    weights = {region: _soften(tumour.label == region) for region in LESION}
    brain = anatomy.brain
    n_brain = int(brain.sum())
    for channel in range(CHANNELS):
        jitter = {name: np.float32(values[channel] * rng.uniform(0.92, 1.08)) for name, values in TISSUE.items()}
        value = (anatomy.gm * jitter["gm"] + anatomy.wm * jitter["wm"] + anatomy.csf * jitter["csf"]) / np.float32(255)
        value *= texture
        inside = value[tumour.box]
        for region, soft in weights.items():
            lesion = np.float32(LESION[region][channel] * rng.uniform(0.9, 1.1))
            inside += soft * (lesion * (1 + 0.08 * tumour.texture) - inside)
        value *= np.exp(0.12 * coarse_field(rng, shape, (4, 4, 3)))  # the coil's bias field
        sigma = np.float32(rng.uniform(0.015, 0.035))
        real = value[brain] + sigma * rng.standard_normal(n_brain, dtype=np.float32)
        imaginary = sigma * rng.standard_normal(n_brain, dtype=np.float32)
        value[:] = 0
        value[brain] = np.sqrt(real * real + imaginary * imaginary)  # magnitude images: Rician noise
        image[..., channel] = np.rint(value * np.float32(rng.uniform(150, 1000)))
    return image
