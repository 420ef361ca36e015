"""Directions named from the data, and a check that the head lies the way the training slices do.

A :class:`~lggdemo.patient.volume.Volume`'s slices are laid out like the ``kaggle_3m`` slices the models were
trained on (slices inferior -> superior, rows anterior -> posterior, columns from the patient's right to left),
but what a page or a file says about a direction is read here from the volume's grid, never assumed:
:func:`display_affine` maps a display voxel (slice, row, column) to RAS+ millimetres through the input's own
affine (NIfTI, DICOM) or the Kaggle layout's stand-in, including any in-plane turn the user chose; the page's
letters and labels come from :func:`shown_axcodes` (the same, read before that turn).

The models are not rotation-invariant: a file whose affine is wrong (a transposed array, say) is laid out
faithfully to that affine, and the head then lies on its side. :func:`check_lie` finds that from the image
itself (the head's long axis runs anterior-posterior in every one of the 88 dataset patients: principal-axis
angle at most 13° from the rows, axis ratio at least 1.09), and :func:`reorient` applies the turn the user
picks, consistently with the grid, so masks still map back onto the input's voxels.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lggdemo.data.directions import KAGGLE_AXCODES, KAGGLE_EDGES, EdgeLetters, axis_words
from lggdemo.data.directions import slice_label as _slice_label
from lggdemo.data.imageio import SLICE_SIZE
from lggdemo.patient.volume import PlaneTurn, SourceGrid, Volume

__all__ = ["KAGGLE_AXCODES", "KAGGLE_EDGES", "EdgeLetters", "display_affine", "display_axcodes", "shown_axcodes",
           "slice_direction",
           "slice_label", "edge_letters", "Lie", "check_lie", "reorient", "TURN_CHOICES", "turn_name"]
#: The head's long axis must be at least this much longer than its short axis before its direction is judged.
MIN_AXIS_RATIO = 1.05
#: Above this angle (degrees) from the rows, the long axis counts as running across the image.
ACROSS_DEG = 45.0


def display_affine(grid: SourceGrid, size: int = SLICE_SIZE) -> np.ndarray:
    """4x4 affine from a display voxel (slice, row, column) of the ``size``² slices to RAS+ mm.

    The chain the readers take, written as matrices: display -> (undo the user's turn) -> the plane before
    the resize -> the canonical RAS+ array (:func:`~lggdemo.patient.volume.canonical_to_display`) -> the
    source array (the grid's orientation) -> the world (the grid's affine).
    """
    from nibabel.orientations import inv_ornt_aff

    canon_affine = np.asarray(grid.affine, float) @ inv_ornt_aff(grid.ornt, grid.shape)
    rows, cols = grid.plane_shape
    half = (size - 1) / 2.0
    undo_turn = np.eye(4)  # display (s, r', c') -> before the turn (s, r, c): the inverse of an orthogonal matrix
    back = grid.turn.matrix.T.astype(float)
    undo_turn[1:3, 1:3] = back
    undo_turn[1:3, 3] = half - back @ np.array([half, half])
    to_canon = np.zeros((4, 4))  # (s, r, c) at size² -> (x, y, z) of the canonical array (pixel centres kept)
    to_canon[0, 2], to_canon[0, 3] = -cols / size, cols - 0.5 - 0.5 * cols / size
    to_canon[1, 1], to_canon[1, 3] = -rows / size, rows - 0.5 - 0.5 * rows / size
    to_canon[2, 0], to_canon[3, 3] = 1.0, 1.0
    return canon_affine @ to_canon @ undo_turn


def display_axcodes(grid: SourceGrid) -> tuple[str, str, str]:
    """The direction each display axis (slice, row, column) points to in the FILE's world, e.g. ("S", "P", "L")
    for kaggle_3m; after a user's turn, what the file's affine says of the turned slices."""
    from nibabel.orientations import aff2axcodes

    return tuple(str(c) for c in aff2axcodes(display_affine(grid)))  # type: ignore[return-value]


def shown_axcodes(grid: SourceGrid) -> tuple[str, str, str]:
    """The directions the page shows: the file's, read before any turn the user chose.

    A turn is the user's statement that the file's orientation is wrong (the head lay on its side): the
    turned slices are then labelled as the file's slices were, face up, not with the file's (wrong) claim.
    Written files keep the file's own grid and affine, so they still open over the input.
    """
    return display_axcodes(dataclasses.replace(grid, turn=PlaneTurn()))


def slice_direction(grid: SourceGrid | None = None) -> str:
    """How the slice numbers run, e.g. "inferior → superior"; the kaggle_3m layout's without a grid."""
    return axis_words(shown_axcodes(grid)[0] if grid is not None else KAGGLE_AXCODES[0])


def slice_label(grid: SourceGrid | None = None) -> str:
    """The slice slider's label, named from the data: "Slice (inferior → superior)"."""
    return _slice_label(shown_axcodes(grid)[0] if grid is not None else KAGGLE_AXCODES[0])


def edge_letters(grid: SourceGrid | None = None) -> EdgeLetters:
    """The letters at a shown slice's edges, from the grid (the kaggle_3m layout's without one)."""
    if grid is None:
        return KAGGLE_EDGES
    _, row, col = shown_axcodes(grid)
    return EdgeLetters.from_axcodes(row, col)


# --- does the head lie as in the training slices? -----------------------------------------------------------


@dataclass(frozen=True)
class Lie:
    """How the head lies in the display slices, measured from the image (the FLAIR head outline)."""

    long_axis_deg: float  # angle of the head's long axis from the image's rows (0: along them, as in training)
    axis_ratio: float  # long / short axis of the head outline (>= 1)
    across: bool  # the long axis runs across the image: the head lies on its side
    suggested: PlaneTurn  # the turn that would stand it up; identity when ``across`` is False
    face_hint: str  # where the face seems to point in the image ("up", "left", ...): a weaker cue, for the user

    @property
    def message(self) -> str:
        """What the page says beside the result; empty when the head lies as in training."""
        if not self.across:
            return ""
        return (f"The head seems to lie on its side: its long axis runs across the image ({self.long_axis_deg:.0f}° "
                f"from the front-back direction the training slices have; the face seems to point {self.face_hint}). "
                "The model was trained on slices with the face at the top and is not rotation-invariant, so its "
                "mask may be wrong. This usually means the file's orientation (affine) is wrong; you can turn the "
                "slices before predicting.")


def head_outline(slices: np.ndarray, step: int = 2) -> np.ndarray:
    """(S, H, W, 3) uint8 -> (S, H/step, W/step) bool: the largest bright FLAIR region of each slice, filled.

    FLAIR only, above a tenth of the volume's 99th percentile: some dataset patients have a bright
    pre-contrast background that the any-channel head rule (``preprocess.head_pixels``) takes as head.
    """
    flair = slices[:, ::step, ::step, 1]
    level = 0.1 * float(np.percentile(flair, 99)) if flair.size else 0.0
    out = np.zeros(flair.shape, bool)
    for i, s in enumerate(flair > max(level, 1.0)):
        s = ndimage.binary_opening(s, iterations=2)
        labels, n = ndimage.label(s)
        if n:
            sizes = ndimage.sum(s, labels, range(1, n + 1))
            out[i] = ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))
    return out


def check_lie(volume: Volume) -> Lie:
    """Measure how the head lies: the long axis of the head outline over the slices where the head is large.

    The long axis decides (88 of 88 dataset patients: within 13° of the rows). Which way the face points is
    a weaker cue (wrong in about 1 patient in 18): the centroid of the lower head slices lies towards the face,
    and the head is wider at the back; it only orders the suggested turn, the user chooses.
    """
    head = head_outline(volume.slices)
    area = head.sum(axis=(1, 2))
    if area.max(initial=0) < 50:
        return Lie(0.0, 1.0, False, PlaneTurn(), "up")
    big = np.nonzero(area > 0.5 * area.max())[0]
    scale = np.ones(2)
    if volume.spacing is not None:  # in mm, so a non-square resize does not tilt the axes
        scale = np.asarray(volume.spacing[1:], float) / max(volume.spacing[1:])
    covs, eggs = [], []
    for i in big:
        pts = np.argwhere(head[i]) * scale
        centre = pts.mean(axis=0)
        covs.append(np.cov((pts - centre).T))
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        eggs.append(((lo + hi) / 2 - centre) / np.maximum((hi - lo) / 2, 1e-6))
    values, vectors = np.linalg.eigh(np.mean(covs, axis=0))
    major = vectors[:, 1]
    angle = float(np.degrees(np.arctan2(abs(major[1]), abs(major[0]))))
    ratio = float(np.sqrt(values[1] / max(values[0], 1e-9)))
    k = max(1, len(big) // 3)

    def centroid(ii: np.ndarray) -> np.ndarray:
        return np.concatenate([np.argwhere(head[i]) * scale for i in ii]).mean(axis=0)

    face = (centroid(big[:k]) - centroid(big[-k:])) / np.sqrt(max(values[1], 1e-9)) + 4 * np.mean(eggs, axis=0)
    across = ratio >= MIN_AXIS_RATIO and angle > ACROSS_DEG
    if abs(face[1]) >= abs(face[0]) or across:
        hint = "left" if face[1] < 0 else "right"
    else:
        hint = "up" if face[0] < 0 else "down"
    suggested = PlaneTurn()
    if across:  # a quarter turn that brings the face (left or right in the image) to the top
        suggested = PlaneTurn(3) if hint == "left" else PlaneTurn(1)
    return Lie(angle, ratio, across, suggested, hint)


#: The turns a user may pick, in words (np.rot90's sense: a positive quarter turn is anticlockwise).
TURN_CHOICES: dict[str, PlaneTurn] = {
    "as the file says": PlaneTurn(),
    "turn 90° clockwise": PlaneTurn(3),
    "turn 90° anticlockwise": PlaneTurn(1),
    "turn 180°": PlaneTurn(2),
    "mirror left-right": PlaneTurn(0, True),
    "mirror top-bottom": PlaneTurn(2, True),
    "swap rows and columns": PlaneTurn(1, True),  # a transposed array: the commonest wrong-affine mistake
}


def turn_name(turn: PlaneTurn) -> str:
    return next(name for name, t in TURN_CHOICES.items() if t == turn) if turn in TURN_CHOICES.values() \
        else f"{turn.quarter_turns} quarter turn(s){', mirrored' if turn.mirror else ''}"


def reorient(volume: Volume, turn: PlaneTurn) -> Volume:
    """The volume with its display slices turned in-plane; its grid keeps the turn, so masks map back onto the
    input's voxels (:func:`display_affine` includes it) while the page labels the turned slices face up
    (:func:`shown_axcodes`)."""
    if turn.is_identity:
        return volume
    spacing = volume.spacing
    if spacing is not None and turn.swaps_axes:
        spacing = (spacing[0], spacing[2], spacing[1])
    grid = dataclasses.replace(volume.grid, turn=volume.grid.turn.then(turn))
    note = (f"Slices turned in-plane by the user ({turn_name(turn)}) before predicting: the page labels them as "
            "the turn says (face up), which disagrees with the file's own orientation; every written mask stays on "
            "the file's grid and affine, so it opens over the file.")
    provenance = dataclasses.replace(volume.provenance, notes=(*volume.provenance.notes, note))
    truth = None if volume.truth is None else turn.apply(volume.truth)
    return dataclasses.replace(volume, slices=turn.apply(volume.slices), spacing=spacing, grid=grid,
                               provenance=provenance, truth=truth)
