"""Where the tumour is: connected lesions, the side of the head's midline, the extent along each axis.

Display layout (contracts): rows run anterior -> posterior, columns the patient's RIGHT -> LEFT (radiological),
slices inferior -> superior. A column index below the midline is the patient's right.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: A lesion is called one-sided when at least this fraction of its voxels lies on that side of the midline;
#: otherwise "both" (it crosses the midline substantially). Our rule, not a clinical standard: it lets a few
#: voxels over the midline (a partial-volume edge, a slightly tilted head) keep a lateral tumour lateral.
SIDE_FRACTION = 0.9
_STRUCTURE_3D = ndimage.generate_binary_structure(3, 3)  # 26-connectivity, as the whole-patient rule


def label_lesions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """(S, H, W) bool -> (labels, n): 3D connected lesions (26-connectivity), labels 1..n."""
    labels, n = ndimage.label(mask, structure=_STRUCTURE_3D)
    return labels, int(n)


def midline_columns(head: np.ndarray | None, shape: tuple[int, int, int]) -> np.ndarray:
    """(S,) midline column per slice: the middle of the head's leftmost and rightmost columns on that slice;
    slices without head pixels take the median of the others; with no head mask, the image centre."""
    centre = (shape[2] - 1) / 2.0
    out = np.full(shape[0], centre)
    if head is None:
        return out
    head = np.asarray(head, bool)
    if head.shape != shape:
        raise ValueError(f"head mask {head.shape} does not match the mask {shape}")
    cols = head.any(axis=1)  # (S, W)
    found = cols.any(axis=1)
    for s in np.flatnonzero(found):
        idx = np.flatnonzero(cols[s])
        out[s] = (idx[0] + idx[-1]) / 2.0
    if found.any() and not found.all():
        out[~found] = float(np.median(out[found]))
    return out


def laterality(mask: np.ndarray, head: np.ndarray | None = None) -> tuple[str, float | None]:
    """(S, H, W) bool -> ("left" | "right" | "both" | "none", fraction of the tumour on the patient's left).

    A voxel exactly on a midline that falls on a pixel centre counts half to each side.
    """
    if not mask.any():
        return "none", None
    mid = midline_columns(head, mask.shape)
    s, _, c = np.nonzero(mask)
    offset = c - mid[s]
    left = float(((offset > 0).sum() + 0.5 * (offset == 0).sum()) / len(c))  # columns run right -> left
    if left >= SIDE_FRACTION:
        return "left", left
    if 1.0 - left >= SIDE_FRACTION:
        return "right", left
    return "both", left


def extent_voxels(mask: np.ndarray) -> tuple[int, int, int]:
    """(S, H, W) bool -> the bounding box's size in voxels as (R-L columns, A-P rows, S-I slices)."""
    if not mask.any():
        return 0, 0, 0
    sizes = []
    for axis in (2, 1, 0):
        idx = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        sizes.append(int(idx[-1] - idx[0] + 1))
    return sizes[0], sizes[1], sizes[2]
