"""From source-grid arrays (one per sequence) to a :class:`~lggdemo.patient.volume.Volume`: the step every
NIfTI and DICOM reader shares, so both formats are reoriented, scaled and resized the same way.

Steps: fill a missing sequence with FLAIR (as the kaggle_3m dataset does), reorient to the closest
canonical grid (flips and permutations only, no interpolation), map each channel to uint8 by
per-volume percentiles, lay the slices out inferior to superior (the kaggle_3m order) and resize them in-plane to 256² with the
same bilinear resize as every uploaded slice (``imageio.resize_image``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from lggdemo.data.imageio import SLICE_SIZE, resize_image, resize_mask
from lggdemo.patient.volume import (
    MAX_SLICES,
    ROLES,
    Provenance,
    SourceGrid,
    Volume,
    VolumeError,
    canonical_to_display,
    display_spacing,
    to_canonical,
)

#: Percentiles of the per-volume intensity window (low over all voxels, high over voxels above the low one).
WINDOW_PERCENTILES = (0.5, 99.5)
#: Obliquity (degrees between an array axis and its closest anatomical axis) above which a note is given.
OBLIQUE_NOTE_DEG = 5.0
_AXIS_NAMES = {0: "left-right", 1: "anterior-posterior", 2: "superior-inferior"}


def to_uint8(channel: np.ndarray) -> tuple[np.ndarray, bool]:
    """One sequence -> uint8; (array, rescaled?). Integer data already in 0..255 is kept as it is (8-bit
    exports such as the kaggle_3m slices round-trip exactly); anything else is windowed between the
    volume's 0.5th percentile and the 99.5th percentile of the voxels above it."""
    arr = np.asarray(channel)
    if arr.size == 0:
        raise VolumeError("an empty sequence")
    if np.issubdtype(arr.dtype, np.integer) and arr.min() >= 0 and arr.max() <= 255:
        return arr.astype(np.uint8), False
    v = arr.astype(np.float32)
    if not np.isfinite(v).all():
        v = np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0)
    lo = float(np.percentile(v, WINDOW_PERCENTILES[0]))
    above = v[v > lo]
    hi = float(np.percentile(above, WINDOW_PERCENTILES[1])) if above.size else lo + 1.0
    hi = hi if hi > lo else lo + 1.0
    return np.clip((v - lo) * (255.0 / (hi - lo)), 0, 255).round().astype(np.uint8), True


def check_spatial_shape(shape: Sequence[int], what: str) -> None:
    """Refuse 2D images and degenerate volumes before any voxel is read."""
    spatial = tuple(int(s) for s in shape[:3])
    if len(shape) < 3 or min(spatial) < 2:
        raise VolumeError(f"{what}: shape {tuple(shape)} is a 2D image, not a volume (a volume needs at least two "
                          "slices along each axis). Upload single slices in the 'Slices' mode instead.")


def fill_roles(channels: Mapping[str, np.ndarray | None], what: str) -> tuple[list[np.ndarray], list[str]]:
    """The three channels in ROLES order, a missing one filled with FLAIR; notes saying which were filled."""
    if channels.get("FLAIR") is None:
        raise VolumeError(f"{what}: no sequence is assigned to FLAIR; the models need at least FLAIR.")
    notes = []
    out = []
    for role in ROLES:
        arr = channels.get(role)
        if arr is None:
            notes.append(f"No {role} sequence: filled with FLAIR, as the kaggle_3m dataset does for missing sequences.")
            arr = channels["FLAIR"]
        out.append(arr)
    shapes = {a.shape for a in out}
    if len(shapes) > 1:
        raise VolumeError(f"{what}: the sequences have different shapes {sorted(shapes)} and cannot be stacked "
                          "voxel by voxel; resample them onto one grid first (e.g. with 3D Slicer or ANTs).")
    return out, notes


def orientation_notes(affine: np.ndarray, ornt: np.ndarray) -> list[str]:
    """Say what the reorientation did: a non-axial acquisition reformatted, an oblique one approximated."""
    import nibabel as nib

    notes = []
    slice_axis = int(ornt[2, 0])
    if slice_axis != 2:
        notes.append(f"The input's third axis runs {_AXIS_NAMES[slice_axis]} (a non-axial acquisition): it was "
                     "reformatted to axial slices by permuting axes (no interpolation); in-plane resolution follows "
                     "the acquisition's slice thickness.")
    angle = float(np.max(nib.affines.obliquity(affine))) * 180.0 / np.pi
    if angle > OBLIQUE_NOTE_DEG:
        notes.append(f"The acquisition is oblique by up to {angle:.0f}°: its axes were taken as the closest anatomical "
                     "axes without resampling, so slices are tilted by that much.")
    return notes


def assemble(channels: Mapping[str, np.ndarray | None], affine: np.ndarray, *, name: str, kind: str,
             files: Sequence[str], series_uids: Sequence[str] = (), notes: Sequence[str] = (),
             truth: np.ndarray | None = None, extra: dict[str, object] | None = None) -> Volume:
    """Source-grid 3D arrays by role (+ the grid's RAS+ affine) -> a Volume in the model's layout."""
    stack, fill_notes = fill_roles(channels, name)
    shape = tuple(int(s) for s in stack[1].shape)
    check_spatial_shape(shape, name)
    if len(shape) != 3:
        raise VolumeError(f"{name}: each sequence must be 3D, got shape {shape}")
    all_notes = list(notes) + fill_notes
    scaled_by_id: dict[int, np.ndarray] = {}  # a filled channel is FLAIR itself: scale it once
    rescaled_any = False
    for arr in stack:
        if id(arr) not in scaled_by_id:
            scaled_by_id[id(arr)], rescaled = to_uint8(arr)
            rescaled_any |= rescaled
    if rescaled_any:
        all_notes.append(f"Intensities mapped to 0–255 per sequence between the volume's {WINDOW_PERCENTILES[0]}th "
                         f"and {WINDOW_PERCENTILES[1]}th percentiles.")
    source = np.stack([scaled_by_id[id(a)] for a in stack], axis=-1)  # (i, j, k, 3)
    canon, canon_affine, ornt = to_canonical(source, np.asarray(affine, float))
    all_notes += orientation_notes(np.asarray(affine, float), ornt)
    display = canonical_to_display(canon)  # (S, R, C, 3)
    if display.shape[0] > MAX_SLICES:
        raise VolumeError(f"{name}: {display.shape[0]} axial slices; more than {MAX_SLICES} are refused.")
    plane = (int(display.shape[1]), int(display.shape[2]))
    if plane != (SLICE_SIZE, SLICE_SIZE):
        aspect = "" if plane[0] == plane[1] else " (aspect ratio not kept; the spacing accounts for it)"
        all_notes.append(f"Slices resized in-plane from {plane[1]}×{plane[0]} to {SLICE_SIZE}×{SLICE_SIZE}{aspect}.")
    slices = np.stack([resize_image(np.ascontiguousarray(s), SLICE_SIZE) for s in display])
    truth_256 = None
    if truth is not None:
        if truth.shape != shape:
            raise VolumeError(f"{name}: the ground-truth mask's shape {truth.shape} differs from the images' {shape}.")
        t_canon, _, _ = to_canonical((np.asarray(truth) > 0).astype(np.uint8), np.asarray(affine, float))
        truth_256 = np.stack([resize_mask(s, SLICE_SIZE) for s in canonical_to_display(t_canon)]).astype(bool)
    grid = SourceGrid(affine=np.asarray(affine, float), shape=shape, ornt=ornt, plane_shape=plane)
    return Volume(slices=slices, spacing=display_spacing(canon_affine, plane), grid=grid,
                  provenance=Provenance(kind, tuple(files), tuple(series_uids), tuple(all_notes)), name=name,
                  truth=truth_256, extra=extra or {})
