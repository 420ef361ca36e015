"""The forward passes of both networks on uint8 slices: the one path from pixels to logits and masks.

The trainer's validation, the evaluator and the app's Predictor all call these, so a card's Dice describes
exactly what the app shows. The networks themselves run on an engine (:mod:`lggdemo.models.engine`: PyTorch or
ONNX Runtime); everything around them -- preprocessing, the test-time flip, thresholds, post-processing -- is here,
the same for both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lggdemo.data.kaggle import Clinical
from lggdemo.models.engine import Engine, as_engine
from lggdemo.models.networks import GradeConfig, GradeNet, SegConfig, masks_from_logits, seg_logits
from lggdemo.models.postprocess import keep_main_components_by_patient
from lggdemo.models.preprocess import crop_tumour, encode_clinical, normalize_images, prepare_images, slices_with_head


@torch.no_grad()
def segment_logits(model: torch.nn.Module | Engine, config: SegConfig, images_256: np.ndarray,
                   device: torch.device | None = None) -> torch.Tensor:
    """(N, 256, 256, 3) uint8 -> (N, 1, s, s) float32 CPU tumour logits at the U-Net's input side ``s``.

    The forward half of :func:`segment_slices`, on its own so that a caller needing the logits
    themselves (the teaching view's threshold slider) gets exactly the numbers the masks come from.
    ``model`` is an engine (:mod:`lggdemo.models.engine`) or a bare U-Net (run on the ``torch`` engine); the
    test-time flip is :func:`lggdemo.models.networks.seg_logits`'s, whichever engine runs the network.
    """
    engine = as_engine(model, device)
    x = prepare_images(images_256, config.image_size)
    return seg_logits(lambda t: torch.from_numpy(engine.segment(t.numpy())), config, x).float()


#: Told after each network pass: (slices done, slices to run). Slices without any head are not counted.
PassProgress = Callable[[int, int], None]


@torch.no_grad()
def segment_slices(model: torch.nn.Module | Engine, config: SegConfig, images_256: np.ndarray,
                   device: torch.device | None = None, batch_size: int = 32, *,
                   probabilities: bool = False, skip_air: bool = True,
                   progress: PassProgress | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, 256, 256, 3) uint8 -> masks (N, 256, 256) uint8, and tumour probabilities when asked.

    The one segmentation path: the trainer's validation, this evaluator and the app's Predictor all
    call it, so a card's Dice describes exactly what the app shows. ``batch_size`` is the images per network
    pass: with the test-time flip a pass holds half as many slices and their mirror images, so memory stays put.
    ``skip_air``: slices without any head (:func:`lggdemo.models.preprocess.slices_with_head`) go through no
    network and get an empty mask and probability 0 -- exact on every patient of ../shared; ``False`` runs
    every slice (the tests that check that).
    """
    size = images_256.shape[1]
    masks = np.zeros((len(images_256), size, size), np.uint8)
    probs = np.zeros((len(images_256), size, size), np.float32) if probabilities else None
    engine = as_engine(model, device)
    step = max(1, batch_size // 2) if config.flip_tta else batch_size
    run = np.flatnonzero(slices_with_head(images_256)) if skip_air and len(images_256) else np.arange(len(images_256))
    for i in range(0, len(run), step):
        chosen = run[i : i + step]
        logits = segment_logits(engine, config, images_256[chosen])
        masks[chosen] = masks_from_logits(logits, config, size)
        if probs is not None:
            if logits.shape[-1] != size:
                logits = torch.nn.functional.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)
            probs[chosen] = torch.sigmoid(logits[:, 0]).cpu().numpy().astype(np.float32)
        if progress is not None:
            progress(min(len(run), i + step), len(run))
    return masks, probs


@dataclass(frozen=True)
class PatientMasks:
    """What :func:`patient_masks` returns, every array in the slices' order, (N, 256, 256)."""

    masks: np.ndarray  # uint8 0/1 after both rules: the masks the app shows and every score counts
    slice_masks: np.ndarray  # uint8 0/1 after the 2D rule only (``masks`` minus what the 3D rule removed)
    probabilities: np.ndarray | None  # float32 tumour probabilities, when asked for


def patient_masks(model: torch.nn.Module | Engine, config: SegConfig, images_256: np.ndarray,
                  patient_ids: Sequence[str], device: torch.device | None = None, batch_size: int = 32, *,
                  skip_air: bool = True, probabilities: bool = False,
                  progress: PassProgress | None = None) -> PatientMasks:
    """(N, 256, 256, 3) uint8 slices of one or more patients -> the masks the whole-patient app shows, with the 2D
    masks they came from and, when asked, the tumour probabilities.

    The 2D rule of :func:`segment_slices`, then the whole-patient rule per patient
    (:func:`lggdemo.models.postprocess.keep_main_components_by_patient`). The app's whole patient
    (``inference.wholepatient.predict_volume``) and every patient-level score go through here -- the evaluator,
    the trainer's validation (and so every card and cross-validation fold), the bundled weights' regression test --
    so no caller can score masks the app would not show. ``patient_ids`` names each slice's patient, slices of a
    patient in slice order; ``progress`` is told after each network pass.
    """
    slice_masks, probs = segment_slices(model, config, images_256, device, batch_size, skip_air=skip_air,
                                        probabilities=probabilities, progress=progress)
    return PatientMasks(keep_main_components_by_patient(slice_masks, patient_ids), slice_masks, probs)


def predict_patient_masks(model: torch.nn.Module | Engine, config: SegConfig, images_256: np.ndarray,
                          patient_ids: Sequence[str], device: torch.device | None = None, batch_size: int = 32, *,
                          skip_air: bool = True) -> np.ndarray:
    """(N, 256, 256, 3) uint8 slices of one or more patients -> (N, 256, 256) uint8 masks the whole-patient app
    shows: :func:`patient_masks`'s ``masks``, for the scorers that need nothing else."""
    return patient_masks(model, config, images_256, patient_ids, device, batch_size, skip_air=skip_air).masks


@torch.no_grad()
def grade_slice_logits(model: GradeNet | Engine, config: GradeConfig, images_256: np.ndarray, masks_256: np.ndarray,
                       clinical: Clinical, device: torch.device | None = None, batch_size: int = 64) -> np.ndarray:
    """Per-slice G3 logits for one patient: tumour crops from normalised slices + the clinical vector.

    Args:
        model: an engine or a bare grade network (run on the ``torch`` engine).
        images_256: (N, 256, 256, 3) uint8 slices; masks_256: (N, 256, 256) 0/1 masks the crops are taken around.
        clinical: the patient's age (years) and sex; unknown values are encoded as missing.

    Returns:
        (N,) float32 logits of G3 (sigmoid: the slice's raw P(G3)).
    """
    engine = as_engine(model, device)
    clin = encode_clinical(clinical, config.age_scale)
    logits = []
    for i in range(0, len(images_256), batch_size):
        full = torch.from_numpy(normalize_images(images_256[i : i + batch_size]))
        crops = crop_tumour(full, masks_256[i : i + batch_size], config.image_size).numpy()
        logits.append(np.asarray(engine.grade(crops, np.repeat(clin[None], len(crops), axis=0)), np.float32))
    return np.concatenate(logits) if logits else np.zeros(0, np.float32)
