"""Tumour volume and its uncertainty range, from the mask and the model's probability map.

The range is *the mask tightened and grown on the model's own probability*, not a confidence interval:

- low: the mask's voxels where the probability is at least ``LOW_THRESHOLD`` (0.7): the part of the drawn
  lesion the model is sure of;
- high: the mask, plus every voxel with probability at least ``HIGH_THRESHOLD`` (0.3) connected (3D,
  26-connectivity, as the whole-patient rule) to it: the lesion as it would be drawn by a more liberal reader.

Why not simply the volumes of ``probability >= 0.7`` and ``>= 0.3``: those count false-positive islands the
whole-patient rule removed, and for a corrected mask they describe another lesion than the one shown. Built from
the mask, the range always holds the shown volume (low <= shown <= high), for the model's mask and a corrected
one alike, and for a mask thresholded at 0.5 its ends are exactly the 0.7 and 0.3 volumes of the same lesion.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

LOW_THRESHOLD = 0.7
HIGH_THRESHOLD = 0.3
RANGE_RULE = (f"low: the mask's voxels with probability >= {LOW_THRESHOLD}; high: the mask plus the voxels with "
              f"probability >= {HIGH_THRESHOLD} connected to it (3D)")
_STRUCTURE_3D = ndimage.generate_binary_structure(3, 3)


def voxel_ml(spacing: tuple[float, float, float] | None) -> float | None:
    """One voxel's volume in mL (spacing in mm), or None when the spacing is unknown."""
    return None if spacing is None else float(np.prod(spacing)) / 1000.0


def volume_range_voxels(mask: np.ndarray, probability: np.ndarray,
                        low: float = LOW_THRESHOLD, high: float = HIGH_THRESHOLD) -> tuple[int, int]:
    """(S, H, W) bool mask and [0, 1] probability -> (low, high) voxel counts; see the module docstring."""
    prob = np.asarray(probability, np.float32)
    if prob.shape != mask.shape:
        raise ValueError(f"probability {prob.shape} does not match the mask {mask.shape}")
    n_low = int((mask & (prob >= low)).sum())
    liberal = (prob >= high) | mask
    labels, _ = ndimage.label(liberal, structure=_STRUCTURE_3D)
    touched = np.unique(labels[mask])
    touched = touched[touched > 0]
    n_high = int(np.isin(labels, touched).sum()) if len(touched) else 0
    return n_low, n_high
