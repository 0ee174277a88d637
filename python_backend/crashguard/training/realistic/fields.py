"""Smooth random fields (numpy only): bias fields, tissue texture and irregular tumour borders."""

from __future__ import annotations

import numpy as np


def _resize_axis(values: np.ndarray, axis: int, size: int) -> np.ndarray:
    """Linear interpolation of one axis onto `size` points spanning the same extent."""
    have = values.shape[axis]
    pos = np.linspace(0.0, have - 1.0, size)
    low = np.floor(pos).astype(np.intp)
    high = np.minimum(low + 1, have - 1)
    shape = [1] * values.ndim
    shape[axis] = size
    weight = (pos - low).astype(np.float32).reshape(shape)
    first = np.take(values, low, axis=axis)
    return first + (np.take(values, high, axis=axis) - first) * weight


def coarse_field(rng: np.random.Generator, shape: tuple[int, ...], cells: tuple[int, ...]) -> np.ndarray:
    """A very smooth field (unit standard deviation): random values on a coarse grid, upsampled linearly.
    Cheap at full size (one float32 volume), which an FFT of 240 x 240 x 155 is not."""
    field = rng.standard_normal(cells).astype(np.float32)
    for axis, size in enumerate(shape):
        field = _resize_axis(field, axis, size)
    return (field - field.mean()) / (field.std() + 1e-6)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> np.ndarray:
    """Gaussian-low-passed white noise (correlation length ~`scale` voxels), unit standard deviation.
    For the tumour's box only: it holds a complex copy of the volume."""
    noise = rng.standard_normal(shape)
    freqs = np.meshgrid(*[np.fft.fftfreq(n) for n in shape], indexing="ij", sparse=True)
    radius2 = sum(f**2 for f in freqs)
    smooth = np.real(np.fft.ifftn(np.fft.fftn(noise) * np.exp(-radius2 * (scale**2) * 2 * np.pi**2)))
    return ((smooth - smooth.mean()) / (smooth.std() + 1e-8)).astype(np.float32)
