"""Putting a sequence acquired on its own grid onto FLAIR's grid, in world coordinates.

Clinical studies rarely acquire FLAIR, T1 and T1 post-contrast at one resolution, field of view and set of
slice positions, but the models stack the three voxel by voxel. FLAIR is the reference (it is the channel the
tumour masks are drawn on, and the one every output is written back to); each other sequence is resampled
onto it through the two affines (source voxel -> RAS+ mm -> FLAIR voxel) with nibabel's
``resample_from_to`` (scipy.ndimage underneath): linear for images, nearest neighbour for masks. No
registration is done: the scanner's coordinates are trusted, as within one session they can be.

FLAIR voxels outside the other sequence's field of view (beyond half a voxel of its edge) get 0, and a
sequence that covers almost none of FLAIR's voxels is refused: it does not overlap in space.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lggdemo.patient.volume import VolumeError, axis_spacing

#: Affines equal within this (mm, and mm per voxel) and the same shape: one grid, nothing to resample.
SAME_GRID_ATOL = 1e-3
#: Below this fraction of FLAIR's voxels inside a sequence's field of view, the two do not overlap.
MIN_OVERLAP = 0.05
#: Below this fraction the note says how much of FLAIR the sequence covers.
FULL_OVERLAP = 0.99


@dataclass(frozen=True)
class Resampled:
    """One sequence on the reference grid, and what was done to put it there (for the page's notes)."""

    data: np.ndarray  # the reference grid's shape; the source's dtype kind (integers stay integers)
    overlap: float  # fraction of reference voxels inside the source's field of view
    source_grid: str  # "128×128×40 at 1.80×1.80×1.80 mm"
    note: str


def same_grid(shape_a: Sequence[int], affine_a: np.ndarray, shape_b: Sequence[int], affine_b: np.ndarray) -> bool:
    return tuple(shape_a[:3]) == tuple(shape_b[:3]) and np.allclose(affine_a, affine_b, atol=SAME_GRID_ATOL)


def describe_grid(shape: Sequence[int], affine: np.ndarray) -> str:
    """``128×128×40 at 1.80×1.80×1.80 mm``: voxels along each array axis and their size."""
    sizes = "×".join(f"{s:.2f}" for s in axis_spacing(affine))
    return f"{'×'.join(str(int(n)) for n in shape[:3])} at {sizes} mm"


def resample_onto(data: np.ndarray, affine: np.ndarray, ref_shape: Sequence[int], ref_affine: np.ndarray, *,
                  what: str, mask: bool = False) -> Resampled:
    """``data`` (3D, on ``affine``) -> the reference grid. Linear for images, nearest for masks (``mask=True``).

    VolumeError naming ``what`` when the two grids do not overlap in space.
    """
    import nibabel as nib
    from nibabel.processing import resample_from_to

    src = np.asarray(data)
    if src.ndim != 3:
        raise VolumeError(f"{what}: only 3D sequences can be resampled (shape {src.shape}).")
    ref = (tuple(int(s) for s in ref_shape[:3]), np.asarray(ref_affine, float))
    affine = np.asarray(affine, float)
    # Which reference voxels lie inside the source's field of view: nearest neighbour of an all-ones array,
    # padded with 0 ('grid-constant'), is 1 exactly within half a voxel of the source's outer voxel centres.
    ones = nib.Nifti1Image(np.ones(src.shape, np.uint8), affine)
    inside = np.asarray(resample_from_to(ones, ref, order=0, mode="grid-constant", cval=0).dataobj) > 0
    overlap = float(inside.mean())
    grid = describe_grid(src.shape, affine)
    if overlap < MIN_OVERLAP:
        raise VolumeError(f"{what} ({grid}) and FLAIR ({describe_grid(*ref)}) do not overlap in space: "
                          f"{overlap:.0%} of FLAIR's voxels lie inside its field of view (at least {MIN_OVERLAP:.0%} "
                          "is needed). Are they from the same patient and session (same frame of reference)?")
    if mask:
        image = nib.Nifti1Image((src > 0).astype(np.uint8), affine)
        out = np.asarray(resample_from_to(image, ref, order=0, mode="grid-constant", cval=0).dataobj)
        how = "nearest neighbour"
    else:
        image = nib.Nifti1Image(src.astype(np.float32), affine)
        # 'nearest' extends the edge voxels for the half voxel beyond the outer centres; ``inside`` zeroes the rest
        out = np.asarray(resample_from_to(image, ref, order=1, mode="nearest").dataobj) * inside
        if np.issubdtype(src.dtype, np.integer):  # interpolated integers stay integers (same scaling as FLAIR's)
            out = np.round(out).astype(src.dtype)
        how = "linear interpolation"
    note = (f"{what} was on its own grid ({grid}) and was resampled onto FLAIR's ({describe_grid(*ref)}) in world "
            f"coordinates, {how}.")
    if overlap < FULL_OVERLAP:
        note += f" It covers {overlap:.0%} of FLAIR's field of view; the rest is 0."
    return Resampled(out, overlap, grid, note)
