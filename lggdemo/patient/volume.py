"""A whole patient as the models see it, and the way back to the grid it came from.

Every reader (Kaggle folder or zip, NIfTI, DICOM) returns a :class:`Volume`: slices ordered from INFERIOR to
SUPERIOR (slice 1 is the skull base, as the ``kaggle_3m`` dataset numbers them), each (256, 256, 3) uint8 in
the model's channel order (pre-contrast, FLAIR, post-contrast), displayed radiologically (rows run anterior
to posterior, columns from the patient's right to left, so the right is on the image's left) -- the layout of
the ``kaggle_3m`` slices the models were trained on.

The readers reach that layout in two steps: the source array is reoriented to the closest canonical
RAS+ grid (``nibabel.as_closest_canonical``'s rule), then :func:`canonical_to_display` flips and
transposes it into slices. :class:`SourceGrid` records both steps, the in-plane size before the resize to
256², and any in-plane turn the user chose (:class:`PlaneTurn`), so :meth:`Volume.mask_on_source_grid` can
put a predicted mask back onto the input's own voxels: same shape, same affine, opening over the input in 3D
Slicer. Directions shown or written are named from that grid (``patient.orientation``), never assumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from lggdemo.data.imageio import SLICE_SIZE, resize_mask

#: Refused above this: no brain MRI series has more, and each slice costs a forward pass.
MAX_SLICES = 512
#: Decompressed voxel data above this is refused before it is read (float32 of 512 x 1024 x 1024 is 2 GiB).
MAX_VOXEL_BYTES = 1024 * 1024 * 1024
ROLES = ("pre-contrast", "FLAIR", "post-contrast")  # the model's channel order


class VolumeError(ValueError):
    """An input that cannot become a patient volume; the message names the input and says why."""


@dataclass(frozen=True)
class Provenance:
    kind: str  # "kaggle" | "nifti" | "dicom"
    files: tuple[str, ...]  # the names as given (one per sequence, or the zip's name)
    series_uids: tuple[str, ...] = ()  # DICOM: SeriesInstanceUID per channel role, in ROLES order
    notes: tuple[str, ...] = ()  # what was done to the input on the way (reorientation, filled channels...)


@dataclass(frozen=True)
class PlaneTurn:
    """An in-plane change of the display slices: an optional left-right mirror, then ``quarter_turns`` turns of
    90° anticlockwise (``numpy.rot90`` on (rows, columns)). The user picks one when the head does not lie the way
    the training slices do; the grid keeps it, so masks map back and directions stay named from the data."""

    quarter_turns: int = 0
    mirror: bool = False

    @property
    def matrix(self) -> np.ndarray:
        """2x2 integer matrix taking a centred (row, column) before the turn to after it."""
        mirror = np.array([[1, 0], [0, -1]]) if self.mirror else np.eye(2, dtype=int)
        return np.linalg.matrix_power(np.array([[0, -1], [1, 0]]), self.quarter_turns % 4) @ mirror

    @staticmethod
    def from_matrix(matrix: np.ndarray) -> PlaneTurn:
        m = np.rint(np.asarray(matrix)).astype(int)
        mirror = bool(round(np.linalg.det(m)) < 0)
        rotation = m @ (np.array([[1, 0], [0, -1]]) if mirror else np.eye(2, dtype=int))
        for k in range(4):
            if np.array_equal(np.linalg.matrix_power(np.array([[0, -1], [1, 0]]), k), rotation):
                return PlaneTurn(k, mirror)
        raise ValueError(f"not an in-plane turn: {m.tolist()}")

    def then(self, other: PlaneTurn) -> PlaneTurn:
        """This turn followed by ``other``."""
        return PlaneTurn.from_matrix(other.matrix @ self.matrix)

    @property
    def is_identity(self) -> bool:
        return self.quarter_turns % 4 == 0 and not self.mirror

    @property
    def swaps_axes(self) -> bool:
        return self.quarter_turns % 2 == 1

    def apply(self, arr: np.ndarray) -> np.ndarray:
        """Turn an (S, H, W, ...) stack of slices."""
        out = arr[:, :, ::-1] if self.mirror else arr
        return np.ascontiguousarray(np.rot90(out, self.quarter_turns % 4, axes=(1, 2)))

    def undo(self, arr: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`apply`."""
        out = np.rot90(arr, -(self.quarter_turns % 4), axes=(1, 2))
        return np.ascontiguousarray(out[:, :, ::-1] if self.mirror else out)


@dataclass(frozen=True)
class SourceGrid:
    """Where the input's voxels are: enough to write a mask back onto them exactly.

    ``affine`` maps source voxel indices (i, j, k) to RAS+ millimetres, as in NIfTI; ``shape`` is the
    source's 3D shape; ``ornt`` the nibabel orientation (3, 2) that takes the source array to the closest
    canonical grid; ``plane_shape`` the (rows, columns) of a display slice before the resize to 256².
    ``affine_known`` is False for inputs without geometry (Kaggle slices without a voxel size given), whose
    affine is a stand-in: the layout's true directions with 1 mm voxels. ``turn`` is the in-plane change the user
    chose after reading (identity unless the head was reoriented), applied after the resize to 256².
    """

    affine: np.ndarray
    shape: tuple[int, int, int]
    ornt: np.ndarray
    plane_shape: tuple[int, int]
    affine_known: bool = True
    turn: PlaneTurn = PlaneTurn()


@dataclass(frozen=True)
class Volume:
    """One patient's slices, spacing and geometry; see the module docstring for the layout."""

    slices: np.ndarray  # (S, 256, 256, 3) uint8, inferior to superior
    spacing: tuple[float, float, float] | None  # mm between slices, rows, columns of ``slices``; None if unknown
    grid: SourceGrid
    provenance: Provenance
    name: str  # what outputs are named after (the input's file or folder name without extension)
    truth: np.ndarray | None = None  # (S, 256, 256) bool ground-truth masks, when the input carried them
    extra: dict[str, object] = field(default_factory=dict, compare=False)  # reader-specific (DICOM datasets)

    def __post_init__(self) -> None:
        s = self.slices
        if s.dtype != np.uint8 or s.ndim != 4 or s.shape[1:] != (SLICE_SIZE, SLICE_SIZE, 3):
            raise VolumeError(f"{self.name}: slices must be (S, {SLICE_SIZE}, {SLICE_SIZE}, 3) uint8, got {s.dtype} {s.shape}")
        if self.truth is not None and self.truth.shape != s.shape[:3]:
            raise VolumeError(f"{self.name}: truth masks {self.truth.shape} do not match the slices {s.shape[:3]}")

    @property
    def n_slices(self) -> int:
        return int(self.slices.shape[0])

    @property
    def voxel_ml(self) -> float | None:
        """Volume of one voxel of ``slices`` in millilitres, or None when the spacing is unknown."""
        return None if self.spacing is None else float(np.prod(self.spacing)) / 1000.0

    def mask_on_source_grid(self, mask: np.ndarray) -> np.ndarray:
        """(S, 256, 256) 0/1 mask in the display layout -> uint8 array of the source's shape and voxel order."""
        m = np.asarray(mask)
        if m.shape != self.slices.shape[:3]:
            raise VolumeError(f"{self.name}: mask {m.shape} does not match the volume {self.slices.shape[:3]}")
        m = self.grid.turn.undo(m)
        plane = np.stack([resize_mask(s.astype(np.uint8), self.grid.plane_shape) for s in m]) if len(m) else m
        return from_canonical(display_to_canonical(plane), self.grid.ornt, self.grid.shape)

    def probability_on_source_grid(self, probability: np.ndarray) -> np.ndarray:
        """(S, 256, 256) probabilities in the display layout -> float32 0-1 array of the source's shape and voxel order.

        The way back is :meth:`mask_on_source_grid`'s, with **bilinear** in-plane resampling and no threshold: a
        probability is a continuous quantity, bilinear keeps it inside [0, 1] and, thresholded at 0.5, it lands
        where the mask's own bilinear-then-threshold resize does. Slices map one to one (no through-plane
        interpolation), as for the mask.
        """
        p = np.asarray(probability, dtype=np.float32)
        if p.shape != self.slices.shape[:3]:
            raise VolumeError(f"{self.name}: probability {p.shape} does not match the volume {self.slices.shape[:3]}")
        p = self.grid.turn.undo(p)
        rows, cols = self.grid.plane_shape
        plane = (np.stack([np.asarray(Image.fromarray(s).resize((cols, rows), Image.BILINEAR)) for s in p])
                 if len(p) and (rows, cols) != p.shape[1:] else p)
        return from_canonical(display_to_canonical(np.clip(plane, 0.0, 1.0)), self.grid.ornt, self.grid.shape,
                              dtype=np.float32)


# --- the two layout steps (used by every reader and by the way back) ------------------------------


def canonical_to_display(xyz: np.ndarray) -> np.ndarray:
    """RAS+ array (x, y, z, ...) -> (slices inferior to superior, rows anterior to posterior, columns right to
    left, ...).

    The kaggle_3m layout: slice 1 at the skull base, and a radiological display (the patient's right on the
    image's left, the face at the top).
    """
    flipped = xyz[::-1, ::-1, :]
    return np.ascontiguousarray(np.swapaxes(flipped, 0, 2))


def display_to_canonical(display: np.ndarray) -> np.ndarray:
    """The inverse of :func:`canonical_to_display`."""
    return np.ascontiguousarray(np.swapaxes(display, 0, 2)[::-1, ::-1, :])


def to_canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data, affine) -> (canonical data, canonical affine, ornt): nibabel's closest-canonical reorientation.

    Only axis flips and permutations: no voxel is interpolated, so the way back is exact.
    """
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

    ornt = io_orientation(affine)
    canon = apply_orientation(data, ornt)
    canon_affine = affine @ inv_ornt_aff(ornt, data.shape[:3])
    return canon, canon_affine, ornt


def from_canonical(canon: np.ndarray, ornt: np.ndarray, shape: tuple[int, int, int],
                   dtype: type = np.uint8) -> np.ndarray:
    """Undo :func:`to_canonical` on an array of the canonical grid (a mask: uint8; a probability map: float32)."""
    from nibabel.orientations import apply_orientation, ornt_transform

    identity = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)
    out = apply_orientation(canon, ornt_transform(identity, ornt))
    if out.shape[:3] != tuple(shape):
        raise VolumeError(f"the mask's grid {out.shape[:3]} does not match the source's {tuple(shape)}")
    return np.ascontiguousarray(out).astype(dtype)


def axis_spacing(affine: np.ndarray) -> np.ndarray:
    """Voxel size in mm along each array axis of an affine (the column norms of its 3x3 part)."""
    return np.sqrt((np.asarray(affine, float)[:3, :3] ** 2).sum(axis=0))


def display_spacing(canon_affine: np.ndarray, plane_shape: tuple[int, int]) -> tuple[float, float, float]:
    """(slice, row, column) spacing in mm of display slices resized from ``plane_shape`` to 256²."""
    sx, sy, sz = axis_spacing(canon_affine)
    rows, cols = plane_shape
    return float(sz), float(sy * rows / SLICE_SIZE), float(sx * cols / SLICE_SIZE)
