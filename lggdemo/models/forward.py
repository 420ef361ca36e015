"""The forward passes of both networks on uint8 slices: the one path from pixels to logits and masks.

The trainer's validation, the evaluator and the app's Predictor all call these, so a card's Dice describes
exactly what the app shows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from lggdemo.data.kaggle import Clinical
from lggdemo.models.networks import GradeConfig, GradeNet, SegConfig, masks_from_logits, seg_logits
from lggdemo.models.postprocess import keep_main_components_by_patient
from lggdemo.models.preprocess import crop_tumour, encode_clinical, normalize_images, prepare_images


@torch.no_grad()
def segment_logits(model: torch.nn.Module, config: SegConfig, images_256: np.ndarray,
                   device: torch.device) -> torch.Tensor:
    """(N, 256, 256, 3) uint8 -> (N, 1, s, s) float32 tumour logits at the U-Net's input side ``s``.

    The forward half of :func:`segment_slices`, on its own so that a caller needing the logits
    themselves (the teaching view's threshold slider) gets exactly the numbers the masks come from.
    """

    model.eval()
    x = prepare_images(images_256, config.image_size).to(device)
    with torch.autocast(device.type, enabled=device.type == "cuda"):
        logits = seg_logits(model, config, x)
    return logits.float()


@torch.no_grad()
def segment_slices(model: torch.nn.Module, config: SegConfig, images_256: np.ndarray, device: torch.device,
                   batch_size: int = 32, *, probabilities: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, 256, 256, 3) uint8 -> masks (N, 256, 256) uint8, and tumour probabilities when asked.

    The one segmentation path: the trainer's validation, this evaluator and the app's Predictor all
    call it, so a card's Dice describes exactly what the app shows.
    """
    size = images_256.shape[1]
    masks, probs = [], []
    for i in range(0, len(images_256), batch_size):
        logits = segment_logits(model, config, images_256[i : i + batch_size], device)
        masks.append(masks_from_logits(logits, config, size))
        if probabilities:
            if logits.shape[-1] != size:
                logits = torch.nn.functional.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)
            probs.append(torch.sigmoid(logits[:, 0]).cpu().numpy().astype(np.float32))
    empty = np.zeros((0, size, size), np.uint8)
    return (np.concatenate(masks) if masks else empty,
            (np.concatenate(probs) if probs else empty.astype(np.float32)) if probabilities else None)


def predict_patient_masks(model: torch.nn.Module, config: SegConfig, images_256: np.ndarray,
                          patient_ids: Sequence[str], device: torch.device, batch_size: int = 32) -> np.ndarray:
    """(N, 256, 256, 3) uint8 slices of one or more patients -> the masks the whole-patient app shows.

    The 2D rule of :func:`segment_slices`, then the whole-patient rule per patient
    (:func:`lggdemo.models.postprocess.keep_main_components_by_patient`). Every patient-level score goes through
    here -- this CLI, the trainer's validation (and so every card and cross-validation fold), the bundled
    weights' regression test -- so no caller can score masks the app would not show. ``patient_ids``
    names each slice's patient, slices of a patient in slice order.
    """
    masks = segment_slices(model, config, images_256, device, batch_size)[0]
    return keep_main_components_by_patient(masks, patient_ids)


@torch.no_grad()
def grade_slice_logits(model: GradeNet, config: GradeConfig, images_256: np.ndarray, masks_256: np.ndarray,
                       clinical: Clinical, device: torch.device, batch_size: int = 64) -> np.ndarray:
    """Per-slice G3 logits for one patient: tumour crops from normalised slices + the clinical vector."""
    model.eval()
    clin = torch.from_numpy(encode_clinical(clinical, config.age_scale))
    logits = []
    for i in range(0, len(images_256), batch_size):
        full = torch.from_numpy(normalize_images(images_256[i : i + batch_size]))
        crops = crop_tumour(full, masks_256[i : i + batch_size], config.image_size).to(device)
        c = clin[None].expand(len(crops), -1).to(device)
        logits.append(model(crops, c)[:, 0].float().cpu().numpy())
    return np.concatenate(logits) if logits else np.zeros(0, np.float32)
