"""A prediction with a person's corrections in place: the same result types, so every export and report follows.

The editor (``ui/predict/correct.py``) keeps corrected slices as 0/1 masks. A download of "the corrected mask"
must state the corrected numbers -- volume, tumour slices, Dice -- not the model's, and the model's own download
must stay available beside it. Rather than teach every exporter and report about corrections, this module
builds a corrected :class:`VolumePrediction` / :class:`PredictionResult` whose derived numbers are recomputed
from the corrected mask by the same rules :func:`~lggdemo.inference.wholepatient.predict_volume` and
:meth:`~lggdemo.inference.predictor.Predictor.predict` use; exporters and ``reports`` then need no change.

The grade is left as the model computed it (from the model's mask): a hand correction changes what is drawn,
and re-grading on it would mix a person's mask into a model output. The reports say so (``MASK_NOTES``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from lggdemo.inference.predictor import PredictionResult, SlicePrediction, head_mask
from lggdemo.inference.wholepatient import VolumePrediction
from lggdemo.metrics.segmentation import dice

MaskKind = Literal["model", "corrected"]
MASK_KINDS: tuple[MaskKind, ...] = ("model", "corrected")
#: What each kind of mask is, for a report's reader.
MASK_NOTES: dict[str, str] = {
    "model": "The model's mask, as predicted (no hand corrections).",
    "corrected": "The model's mask with hand corrections on the listed slices; every volume, area and Dice here is "
                 "the corrected mask's. The grade is the model's, computed from its own mask.",
}


class CorrectionShapeError(ValueError):
    """A corrected mask that does not fit the prediction it corrects (wrong slice index or shape)."""


@dataclass(frozen=True)
class CorrectedVolume:
    """A whole patient's corrected prediction and which slices (1-based) differ from the model's mask."""

    prediction: VolumePrediction
    edited_slices: tuple[int, ...]


def correct_volume(prediction: VolumePrediction, corrected: np.ndarray, voxel_ml: float | None,
                   truth: np.ndarray | None) -> CorrectedVolume:
    """``prediction`` with ``corrected`` (S, 256, 256) 0/1 as its mask; volume, slices and Dice recomputed.

    ``voxel_ml`` is the volume's (``Volume.voxel_ml``; None without spacing) and ``truth`` its reference masks.
    The 3D rule's ``removed`` pixels are kept only where the corrected mask did not paint them back.
    """
    mask = (np.asarray(corrected) > 0).astype(np.uint8)
    if mask.shape != prediction.mask.shape:
        raise CorrectionShapeError(f"the corrected mask is {mask.shape}, the prediction's {prediction.mask.shape}")
    areas = mask.reshape(len(mask), -1).sum(axis=1)
    voxels = int(areas.sum())
    edited = tuple(int(i) + 1 for i in np.flatnonzero((mask != prediction.mask).reshape(len(mask), -1).any(axis=1)))
    removed = None if prediction.removed is None else (prediction.removed.astype(bool) & ~mask.astype(bool)).astype(np.uint8)
    fixed = replace(
        prediction, mask=mask, tumour_voxels=voxels, tumour_ml=None if voxel_ml is None else voxels * voxel_ml,
        tumour_slices=tuple(int(i) + 1 for i in np.flatnonzero(areas)),
        dice=dice(mask, truth) if truth is not None else None, removed=removed,
        removed_voxels=0 if removed is None else int(removed.sum()),
    )
    return CorrectedVolume(fixed, edited)


def overlay_slices(mask: np.ndarray, edits: Mapping[int, np.ndarray]) -> np.ndarray:
    """A copy of the (S, H, W) ``mask`` with ``edits`` (0-based slice index -> (H, W) mask) in place."""
    out = np.array(mask, dtype=np.uint8, copy=True)
    for idx, m in edits.items():
        if not 0 <= idx < len(out) or np.shape(m) != out.shape[1:]:
            raise CorrectionShapeError(f"slice {idx}: a {np.shape(m)} correction for a {out.shape} mask")
        out[idx] = (np.asarray(m) > 0).astype(np.uint8)
    return out


def _slice(pred: SlicePrediction, mask: np.ndarray, image: np.ndarray, truth: np.ndarray | None) -> SlicePrediction:
    m = (np.asarray(mask) > 0).astype(np.uint8)
    if m.shape != pred.mask.shape:
        raise CorrectionShapeError(f"{pred.name}: a {m.shape} correction for a {pred.mask.shape} mask")
    head = head_mask(image)
    return replace(pred, mask=m, area_px=int(m.sum()), area_in_brain_px=int((m.astype(bool) & head).sum()),
                   dice=None if truth is None else dice(m, truth))


@dataclass(frozen=True)
class CorrectedSlices:
    """Slice mode's corrected result and which slices (0-based indices) were corrected."""

    result: PredictionResult
    edited: tuple[int, ...]


def correct_slices(result: PredictionResult, edits: Mapping[int, np.ndarray], images: list[np.ndarray],
                   truths: list[np.ndarray | None]) -> CorrectedSlices:
    """``result`` with the corrected masks of ``edits`` (0-based slice index -> (256, 256) mask) in place.

    ``images`` and ``truths`` are the batch's 256² slices and reference masks (None where absent), in the
    result's order: the area inside the head and the Dice are recomputed from them, as ``Predictor`` does.
    """
    slices = list(result.slices)
    edited = []
    for idx, m in sorted(edits.items()):
        if not 0 <= idx < len(slices):
            raise CorrectionShapeError(f"slice index {idx} is outside the {len(slices)} predicted slices")
        fixed = _slice(slices[idx], m, images[idx], truths[idx])
        if not np.array_equal(fixed.mask, slices[idx].mask):
            edited.append(idx)
        slices[idx] = fixed
    return CorrectedSlices(replace(result, slices=tuple(slices)), tuple(edited))
