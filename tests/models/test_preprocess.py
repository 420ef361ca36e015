"""The one preprocessing: slice normalisation, tumour crops and the clinical vector (``lggdemo.models.preprocess``)."""

from __future__ import annotations

import numpy as np
import pytest

from lggdemo.data.kaggle import Clinical
from lggdemo.models.preprocess import (
    AgeScale,
    ClinicalInputError,
    crop_tumour,
    encode_clinical,
    normalize_images,
    prepare_images,
    tumour_box,
)


def _head(value: int = 100) -> np.ndarray:
    img = np.zeros((1, 32, 32, 3), np.uint8)
    img[0, 8:24, 8:24] = value
    img[0, 12:16, 12:16, 1] = value + 80  # a bright FLAIR spot inside the head
    return img


def test_normalisation_uses_head_pixels_only_and_ignores_the_background() -> None:
    x = normalize_images(_head())
    head = _head()[0].max(axis=2) > 10
    assert x.shape == (1, 3, 32, 32) and x.dtype == np.float32
    for c in range(3):
        assert abs(float(x[0, c][head].mean())) < 1e-4  # z-scored over the head
    brighter = _head(150)
    assert np.allclose(normalize_images(brighter)[0][:, head], x[0][:, head], atol=1e-2)  # contrast, not level


def test_prepare_images_resizes_any_slice_to_the_model_side() -> None:
    t = prepare_images([np.full((40, 50, 3), 60, np.uint8), np.full((256, 256, 3), 60, np.uint8)], 64)
    assert tuple(t.shape) == (2, 3, 64, 64)


def test_tumour_box_is_a_square_with_margin_inside_the_image_and_whole_image_when_empty() -> None:
    mask = np.zeros((64, 64), np.uint8)
    mask[30:40, 50:60] = 1
    y0, x0, y1, x1 = tumour_box(mask)
    assert y1 - y0 == x1 - x0 >= 10 and 0 <= y0 and 0 <= x0 and y1 <= 64 and x1 <= 64
    assert y0 <= 30 and y1 >= 40 and x0 <= 50 and x1 >= 60
    assert tumour_box(np.zeros((64, 64), np.uint8)) == (0, 0, 64, 64)


def test_crop_tumour_gives_the_grade_models_side() -> None:
    images = prepare_images(np.repeat(_head(), 2, axis=0), 32)
    masks = np.zeros((2, 32, 32), np.uint8)
    masks[0, 12:16, 12:16] = 1
    assert tuple(crop_tumour(images, masks, 24).shape) == (2, 3, 24, 24)


def test_clinical_vector_marks_missing_values_and_never_reads_the_grade() -> None:
    scale = AgeScale(mean=40.0, std=10.0)
    assert encode_clinical(Clinical(50.0, "male", grade="G3"), scale).tolist() == [1.0, 0.0, 1.0, 0.0]
    assert encode_clinical(Clinical(50.0, "male", grade="G2"), scale).tolist() == [1.0, 0.0, 1.0, 0.0]
    assert encode_clinical(Clinical(None, None), scale).tolist() == [0.0, 1.0, 0.0, 1.0]
    with pytest.raises(ClinicalInputError, match="Age"):
        encode_clinical(Clinical(-3.0, None), scale)
    with pytest.raises(ClinicalInputError, match="Sex"):
        encode_clinical(Clinical(None, "other"), scale)
