"""The one transform from pixels and clinical fields to model inputs.

Training, inference and Grad-CAM all call these functions, so a model never sees data prepared
differently from how it was trained. Normalisation is per slice (not per volume) because the
Predict page receives single slices: statistics over a whole volume would not exist there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lggdemo.data.imageio import resize_image
from lggdemo.data.kaggle import Clinical

#: Pixels darker than this in every channel are background (outside the head).
BACKGROUND_LEVEL = 10
AGE_RANGE = (0.0, 120.0)
#: Order of the clinical feature vector fed to the grade model.
CLINICAL_FEATURES = ("age_z", "age_missing", "sex_male", "sex_missing")


class ClinicalInputError(ValueError):
    """A clinical value outside what the model can take; the message is for the user."""


def head_pixels(images: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 -> (...) bool: pixels brighter than the background in any channel (inside the head).

    Two element-wise maxima rather than ``max(axis=-1)``: numpy reduces a 3-long last axis over ten times slower.
    """
    if images.ndim < 3 or images.shape[-1] != 3:
        raise ValueError(f"expected slices with 3 channels last, got shape {images.shape}")
    return np.maximum(np.maximum(images[..., 0], images[..., 1]), images[..., 2]) > BACKGROUND_LEVEL


def slices_with_head(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N,) bool: the slices that show any head at all, which are the only ones that can hold
    tumour.

    A slice is left out only when *no* pixel of any channel is brighter than :data:`BACKGROUND_LEVEL` -- air above
    the skull or below the skull base, as :func:`head_pixels` defines the head for normalisation. One bright pixel
    is enough to run the network on it: the rule is meant to be exact (the masks equal a run over every slice;
    tests/models/test_skip_air.py checks every patient of ../shared), not clever. Such slices get an empty mask and
    no forward pass (:func:`lggdemo.models.forward.segment_slices`).
    """
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected slices (N, H, W, 3), got shape {images.shape}")
    if len(images) == 0:
        return np.zeros(0, bool)
    return images.reshape(len(images), -1).max(axis=1) > BACKGROUND_LEVEL


def normalize_images(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32, z-scored per slice and channel over head pixels.

    Vectorised because training normalises every slice of the dataset once per run, and the sums over head
    pixels are matrix products (float32, BLAS) because this runs before every prediction too.
    """
    n, h, w, c = images.shape
    x = np.array(images.transpose(0, 3, 1, 2), dtype=np.float32, order="C").reshape(n, c, h * w)  # a copy: edited below
    head = head_pixels(images).reshape(n, h * w, 1).astype(np.float32)
    count = np.maximum(head.sum(axis=1, keepdims=True), 1.0)  # (N, 1, 1)
    x -= (x @ head) / count  # centred on the head's mean
    var = ((x * x) @ head) / count
    x /= np.sqrt(var + 1.0)
    np.clip(x, -6, 6, out=x)
    return x.reshape(n, c, h, w)


def prepare_images(images: list[np.ndarray] | np.ndarray, size: int) -> torch.Tensor:
    """Slices of any size (H, W, 3) uint8 -> model-ready (N, 3, size, size) tensor."""
    batch = np.stack([resize_image(np.asarray(im, np.uint8), size) for im in images])
    return torch.from_numpy(normalize_images(batch))


def tumour_box(mask: np.ndarray, margin: float = 0.25, min_side: int = 24) -> tuple[int, int, int, int]:
    """A square box (y0, x0, y1, x1) in pixels, end-exclusive, around a (H, W) mask's pixels with a ``margin``
    (a fraction of the tumour's side, each way) and at least ``min_side`` pixels; the whole image if empty.

    The grade model looks at the tumour and its surroundings, not at the whole head, so that the
    few hundred tumour pixels are not drowned by the rest of the slice.
    """
    h, w = mask.shape[-2:]
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return 0, 0, h, w
    cy, cx = (ys.min() + ys.max() + 1) / 2, (xs.min() + xs.max() + 1) / 2
    side = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
    side = int(min(max(side * (1 + 2 * margin), min_side), min(h, w)))
    y0 = int(np.clip(round(cy - side / 2), 0, h - side))
    x0 = int(np.clip(round(cx - side / 2), 0, w - side))
    return y0, x0, y0 + side, x0 + side


def crop_tumour(images: torch.Tensor, masks: np.ndarray, size: int) -> torch.Tensor:
    """(N, 3, H, W) normalised slices + (N, H, W) masks -> (N, 3, size, size) crops for the grade model."""
    crops = []
    for img, msk in zip(images, masks):
        y0, x0, y1, x1 = tumour_box(np.asarray(msk))
        crop = img[:, y0:y1, x0:x1][None]
        crops.append(torch.nn.functional.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False))
    return torch.cat(crops) if crops else torch.zeros((0, 3, size, size))


@dataclass(frozen=True)
class AgeScale:
    """Standardisation of age, fitted on the training patients and stored with the grade model."""

    mean: float = 45.0
    std: float = 13.0


def validate_clinical(clinical: Clinical) -> Clinical:
    """Raise :class:`ClinicalInputError` for values no patient has; unknown (None) is always allowed."""
    if clinical.age is not None:
        age = float(clinical.age)
        if not np.isfinite(age) or not AGE_RANGE[0] <= age <= AGE_RANGE[1]:
            raise ClinicalInputError(f"Age must be between {AGE_RANGE[0]:.0f} and {AGE_RANGE[1]:.0f} years (got {clinical.age}).")
    if clinical.sex not in (None, "female", "male"):
        raise ClinicalInputError(f"Sex must be 'female', 'male' or unknown (got {clinical.sex!r}).")
    return clinical


def encode_clinical(clinical: Clinical, scale: AgeScale) -> np.ndarray:
    """Clinical fields -> the grade model's feature vector (see CLINICAL_FEATURES). Grade is never read."""
    validate_clinical(clinical)
    age_missing = clinical.age is None
    sex_missing = clinical.sex is None
    return np.array(
        [
            0.0 if age_missing else (float(clinical.age) - scale.mean) / scale.std,  # type: ignore[arg-type]
            float(age_missing),
            float(clinical.sex == "male"),
            float(sex_missing),
        ],
        dtype=np.float32,
    )
