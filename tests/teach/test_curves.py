"""The threshold lesson's numbers: a view from the prediction's own probability (no forward pass) cuts the same
masks as the logits; the Dice/area curve on a probability map built so every point is known; and the slice where
the threshold matters most."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lggdemo.data.kaggle import load_image, scan_dataset
from lggdemo.inference.predictor import Predictor
from lggdemo.metrics.segmentation import dice
from lggdemo.models.networks import SegConfig
from lggdemo.teach import (
    TeachInputError,
    masks_at,
    model_view,
    most_sensitive_slice,
    threshold_change_px,
    threshold_curve,
    view_from_probability,
)

IMAGE = np.full((256, 256, 3), 40, np.uint8)


def rings() -> np.ndarray:
    """Probability 0.9 in a 10x10 core, 0.6 in the 20x20 square around it, 0.3 in a 30x30 square around that."""
    p = np.zeros((256, 256), np.float32)
    p[100:130, 100:130] = 0.3
    p[105:125, 105:125] = 0.6
    p[110:120, 110:120] = 0.9
    return p


def test_curve_areas_and_dice_on_a_known_probability_map() -> None:
    view = view_from_probability(SegConfig(image_size=64), IMAGE, rings())
    truth = np.zeros((256, 256), np.uint8)
    truth[105:125, 105:125] = 1  # the 0.6 square: Dice 1 between thresholds 0.3 and 0.6
    curve = threshold_curve(view, truth, thresholds=[0.1, 0.29, 0.5, 0.59, 0.7, 0.95])
    assert list(curve.area_px) == [900, 900, 400, 400, 100, 0]
    expected = [2 * 400 / (900 + 400), 2 * 400 / 1300, 1.0, 1.0, 2 * 100 / 500, 0.0]
    assert curve.dice is not None and np.allclose(curve.dice, expected)
    assert curve.best == (0.5, 1.0) and curve.area_range == (0, 900)
    # each point is the lesson's own mask at that threshold
    assert curve.area_px[2] == int(masks_at(view, 0.5).final.sum())
    assert threshold_curve(view).dice is None
    with pytest.raises(TeachInputError):
        threshold_curve(view, thresholds=[0.0, 0.5])
    with pytest.raises(TeachInputError):
        threshold_curve(view, np.zeros((10, 10)))


def test_view_from_probability_refuses_a_wrong_shape() -> None:
    with pytest.raises(TeachInputError, match="probability map"):
        view_from_probability(SegConfig(), IMAGE, np.zeros((128, 128)))


def test_sensitive_slice_is_the_one_whose_mask_changes_most() -> None:
    confident = np.zeros((256, 256), np.float32)
    confident[10:20, 10:20] = 0.99  # never changes side between 0.05 and 0.95
    unsure = rings()
    assert threshold_change_px(confident) == 0 and threshold_change_px(unsure) == 900
    assert most_sensitive_slice([confident, unsure, confident]) == 1
    assert most_sensitive_slice([confident, confident]) is None
    assert most_sensitive_slice([]) is None


def test_the_view_from_the_predictions_probability_matches_a_forward_pass(tiny_weights: Path,
                                                                          synthetic_root: Path) -> None:
    """The lesson no longer runs the U-Net: its masks from the page's stored probability must be the masks the
    logits give, at every threshold of the slider."""
    predictor = Predictor.from_directory(tiny_weights, torch.device("cpu"))
    index = scan_dataset(synthetic_root)
    records = index.patients[index.patient_ids[0]]
    image = load_image(records[len(records) // 2])
    masks, probs = predictor.segment(image[None])
    reused = view_from_probability(predictor.seg_config, image, probs[0])
    direct = model_view(predictor.engine, predictor.seg_config, image)
    assert np.array_equal(masks_at(reused).final, masks[0])  # the model's own mask at its own threshold
    for t in (0.05, 0.3, 0.45, 0.5, 0.55, 0.7, 0.95):
        a, b = masks_at(reused, t).final, masks_at(direct, t).final
        assert int((a != b).sum()) <= 2, t  # at most a pixel or two on the threshold's edge (float32 rounding)
    assert np.array_equal(reused.network_input, direct.network_input)
    assert dice(masks_at(reused).final, masks[0]) == 1.0
