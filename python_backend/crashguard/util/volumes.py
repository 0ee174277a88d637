"""Reading a medical volume with nibabel (imported on first use): NIfTI and the other formats that carry voxels
and an affine."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nibabel.spatialimages import SpatialImage


def load_volume(path: str | Path) -> SpatialImage:
    """nibabel's image of the file, its voxels left on disk until read; ValueError naming the file when nibabel
    reads it as something without voxels and an affine."""
    import nibabel as nib
    from nibabel.spatialimages import SpatialImage

    image = nib.load(str(path))
    if not isinstance(image, SpatialImage):
        raise ValueError(f"{path}: not a volume (nibabel reads it as {type(image).__name__}, without an affine)")
    return image
