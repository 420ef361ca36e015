"""A small head with 3D structure for the fast tests: an ellipsoid of smooth 3D texture with dark ventricles, a
bright rim and a bright tumour ball, 18 slices of 256² with no spacing (the registration's 4 mm stand-in grid), or
thinner slices of a given spacing (the same head in mm)."""

from __future__ import annotations

import numpy as np

from lggdemo.patient.readers.kaggle import kaggle_grid
from lggdemo.patient.volume import Provenance, Volume


def head_volume(seed: int = 0, n_slices: int = 18, tumour_centre: tuple[float, float, float] = (9.0, 100.0, 150.0),
                tumour_radius_px: float = 22.0, name: str = "head", slice_mm: float | None = None) -> Volume:
    """``slice_mm`` None: no spacing recorded (the registration's 4 mm stand-in); else (slice_mm, 1, 1) mm."""
    from scipy import ndimage

    dz = 4.0 if slice_mm is None else slice_mm
    rng = np.random.default_rng(seed)
    s, h, w = n_slices, 256, 256
    z, y, x = np.indices((s, h, w)).astype(np.float32)
    zc, yc, xc = (s - 1) / 2, 128.0, 128.0
    r = np.sqrt(((z - zc) * dz / (18 * 4.0 * 0.55)) ** 2 + ((y - yc) / 105) ** 2 + ((x - xc) / 88) ** 2)
    head = r < 1.0
    texture = ndimage.gaussian_filter(rng.normal(size=(s, h, w)).astype(np.float32), (4.0 / dz, 6.0, 6.0))
    texture /= texture.std() + 1e-6
    flair = np.where(head, 90 + 18 * texture, 0.0)
    flair += np.where((r >= 0.93) & head, 60, 0)  # a bright rim (skull/scalp)
    vent = (((y - 118) / 28) ** 2 + ((x - xc) / 14) ** 2 + ((z - zc) * dz / (18 * 4.0 * 0.25)) ** 2) < 1
    flair -= np.where(vent, 50, 0)
    tz, ty, tx = tumour_centre
    tumour = (((z - tz) * dz) ** 2 + (y - ty) ** 2 + (x - tx) ** 2) <= tumour_radius_px**2
    tumour &= head
    flair += np.where(tumour, 80, 0)
    flair = np.clip(flair, 0, 255).astype(np.uint8)
    slices = np.stack([np.clip(flair * 0.9, 0, 255).astype(np.uint8), flair, flair], axis=-1)
    return Volume(slices=slices, spacing=None if slice_mm is None else (slice_mm, 1.0, 1.0), grid=kaggle_grid(s, (h, w), None),
                  provenance=Provenance("kaggle", (name,)), name=name, truth=tumour)
