"""Inference on a whole patient: a :class:`~lggdemo.patient.volume.Volume` -> masks, tumour volume, one P(G3).

The mask is :func:`lggdemo.models.forward.patient_masks` on the Predictor's engine: the same function, and so the
same 2D and whole-patient rules (the largest 3D connected component), as the evaluator and the trainer's
validation score, so the mask a page shows is the mask a card's Dice describes. The grade follows from the cleaned
masks with the evaluator's patient-level aggregation (``models.networks.patient_logit``: the tumour-area-weighted
mean of the slice logits, the number the model card's AUC was measured on). The Predict page and
``lggdemo-predict`` both call :func:`predict_volume`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from lggdemo.data.kaggle import Clinical
from lggdemo.inference.grade import PatientGrade
from lggdemo.inference.predictor import Predictor, head_mask
from lggdemo.metrics.segmentation import dice
from lggdemo.models.forward import patient_masks
from lggdemo.models.preprocess import validate_clinical
from lggdemo.patient.volume import Volume

ProgressFn = Callable[[float, str], None]


@dataclass(frozen=True)
class VolumePrediction:
    """One patient's result in the Volume's display layout (S, 256, 256)."""

    name: str
    mask: np.ndarray  # (S, 256, 256) uint8 0/1 after the 3D rule
    probability: np.ndarray  # (S, 256, 256) float16 tumour probability (for views; float16 halves the memory)
    tumour_voxels: int
    tumour_ml: float | None  # None when the spacing is unknown
    tumour_slices: tuple[int, ...]  # 1-based slice numbers with tumour
    removed_voxels: int  # voxels the 3D rule removed
    dice: float | None  # per-volume Dice against the volume's truth masks
    truth_voxels: int | None
    grade: PatientGrade
    clinical: Clinical | None
    model_version: str
    device: str
    spacing: tuple[float, float, float] | None
    brain_voxels: int
    removed: np.ndarray | None = None  # (S, 256, 256) uint8: pixels the 3D rule removed (drawn in the slice view)


def predict_volume(predictor: Predictor, volume: Volume, clinical: Clinical | None, *,
                   progress: ProgressFn | None = None) -> VolumePrediction:
    """Masks, 3D post-processing, tumour volume and one patient-level P(G3) (skipped when ``clinical`` is None).

    Args:
        predictor: the loaded models and their engine.
        volume: the patient, (S, 256, 256, 3) uint8 slices in the display layout.
        clinical: age and sex for the grade; ``None`` skips the grade.
        progress: told (fraction 0-1, message) as the slices are segmented and graded.

    Returns:
        A :class:`VolumePrediction` in the volume's layout: masks (S, 256, 256) uint8, probabilities float16,
        voxels, mL (with the volume's spacing), the patient's grade. Invalid clinical values raise
        ``ClinicalInputError`` before any model runs.
    """
    if clinical is not None:
        validate_clinical(clinical)
    report = progress or (lambda _f, _m: None)
    images = volume.slices
    n = len(images)

    def segmented(done: int, total: int) -> None:
        report(0.8 * done / max(total, 1), f"Segmenting: {done} of {total} slices with head")

    shown = patient_masks(predictor.engine, predictor.seg_config, images, [volume.name] * n,
                          batch_size=predictor.batch_size, probabilities=True, progress=segmented)
    raw, mask = shown.slice_masks, shown.masks
    # torch converts with the CPU's F16C instructions; numpy's float16 cast takes a slow path for the tiny
    # probabilities of background pixels (0.4 s of a 3.5 s patient, measured).
    probability = torch.from_numpy(np.ascontiguousarray(shown.probabilities, np.float32)).to(torch.float16).numpy()
    areas = mask.reshape(n, -1).sum(axis=1)
    logits = None
    if clinical is not None:
        report(0.85, "Grading")
        # Slices without tumour weigh nothing in patient_logit when any slice has tumour: grading only the
        # tumour slices gives the same number for a fraction of the work.
        sel = np.flatnonzero(areas) if areas.any() else np.arange(n)
        logits = predictor.grade(images[sel], mask[sel], clinical)
        areas_graded = areas[sel]
    else:
        areas_graded = areas
    grade = predictor.patient_grade(logits, areas_graded)
    voxels = int(areas.sum())
    report(1.0, "Done")
    return VolumePrediction(
        name=volume.name, mask=mask, probability=probability, tumour_voxels=voxels,
        tumour_ml=None if volume.voxel_ml is None else voxels * volume.voxel_ml,
        tumour_slices=tuple(int(i) + 1 for i in np.flatnonzero(areas)),
        removed_voxels=int(raw.sum()) - voxels,
        dice=dice(mask, volume.truth) if volume.truth is not None else None,
        truth_voxels=int(volume.truth.sum()) if volume.truth is not None else None,
        grade=grade, clinical=clinical, model_version=predictor.version, device=predictor.device_text,
        spacing=volume.spacing, brain_voxels=int(sum(head_mask(im).sum() for im in images)),
        removed=(raw.astype(bool) & ~mask.astype(bool)).astype(np.uint8),
    )
