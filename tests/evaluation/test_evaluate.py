"""Metric functions against cases computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lggdemo import evaluate
from lggdemo.metrics.bootstrap import bootstrap_ci
from lggdemo.metrics.grade import accuracy, balanced_accuracy, roc_auc
from lggdemo.metrics.segmentation import (
    dice,
    evaluate_segmentation,
    per_volume_dice,
    tumour_slice_dice,
    tumour_slice_dice_by_area,
)
from lggdemo.models.forward import predict_patient_masks


def test_dice_hand_cases() -> None:
    a = np.array([[1, 1, 0, 0]])
    b = np.array([[1, 0, 1, 0]])
    assert dice(a, b) == pytest.approx(2 * 1 / (2 + 2))
    assert dice(a, a) == 1.0
    assert dice(np.zeros(4), np.zeros(4)) == 1.0  # nothing to find, nothing found
    assert dice(np.zeros(4), np.array([0, 1, 0, 0])) == 0.0


def test_per_volume_dice_pools_slices_of_a_patient() -> None:
    # Patient A: slice 1 perfect (2 px), slice 2 misses 2 px -> 3D Dice = 2*2/(2+4) = 0.667, not the slice mean 0.5
    pred = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]])
    truth = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [1, 0, 0, 0]])
    per = per_volume_dice(pred, truth, ["A", "A", "B"])
    assert per["A"] == pytest.approx(4 / 6)
    assert per["B"] == 1.0
    assert tumour_slice_dice(pred, truth) == pytest.approx((1.0 + 0.0 + 1.0) / 3)
    ev = evaluate_segmentation(pred, truth, ["A", "A", "B"])
    assert ev.metrics["per_volume_dice_mean"].value == pytest.approx((4 / 6 + 1) / 2)
    assert ev.metrics["per_volume_dice_mean"].n == 2


def test_auc_hand_cases() -> None:
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    # pairs (pos, neg): (0.4>0.1) (0.4<0.5) (0.6>0.1) (0.6>0.5) -> 3/4
    assert roc_auc([0, 0, 1, 1], [0.1, 0.5, 0.4, 0.6]) == pytest.approx(0.75)
    assert roc_auc([0, 1], [0.5, 0.5]) == 0.5  # ties count half
    assert np.isnan(roc_auc([1, 1], [0.2, 0.3]))


def test_accuracy_and_balanced_accuracy() -> None:
    y = [0, 0, 0, 1]
    p = [0.1, 0.2, 0.3, 0.4]  # predicts all G2
    assert accuracy(y, p) == 0.75
    assert balanced_accuracy(y, p) == 0.5


def test_bootstrap_interval_brackets_the_estimate() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 60)
    s = y + rng.normal(0, 0.8, 60)
    lo, hi = bootstrap_ci(roc_auc, y, s, n_boot=500)
    assert lo < roc_auc(y, s) < hi
    assert 0 <= lo < hi <= 1
    assert bootstrap_ci(roc_auc, [1, 1, 1], [0.1, 0.2, 0.3]) is None


def test_tumour_slice_dice_by_area_splits_slices_by_true_size() -> None:
    truth = np.zeros((3, 64, 64), np.uint8)
    truth[0, :10, :10] = 1  # 100 px: missed
    truth[1, :40, :40] = 1  # 1600 px: found
    pred = truth.copy()
    pred[0] = 0
    bins = tumour_slice_dice_by_area(pred, truth)  # slice 2 has no tumour and is in no bin
    assert bins == {"1-255 px": {"n": 1, "dice": 0.0}, "1024-4095 px": {"n": 1, "dice": 1.0}}
    assert np.mean([b["dice"] for b in bins.values()]) == pytest.approx(tumour_slice_dice(pred, truth))


def test_patient_masks_are_the_2d_masks_with_the_whole_patient_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every patient-level score goes through predict_patient_masks: a speck away from a patient's tumour is
    gone from what is scored, per patient (another patient's smaller tumour stays)."""
    two_d = np.zeros((4, 16, 16), np.uint8)
    two_d[0:2, 2:8, 2:8] = 1  # patient A's tumour, 72 voxels
    two_d[1, 13:15, 13:15] = 1  # a 4-voxel speck in A
    two_d[3, 5:7, 5:7] = 1  # patient B's small tumour
    seen = {}

    def fake_segment(model, config, images, device, batch_size=32, **kw):  # noqa: ANN001, ANN003, ANN202
        seen["n"] = len(images)
        return two_d.copy(), None

    monkeypatch.setattr(evaluate, "segment_slices", fake_segment)
    images = np.zeros((4, 16, 16, 3), np.uint8)
    out = predict_patient_masks(torch.nn.Identity(), None, images, ["A", "A", "B", "B"], torch.device("cpu"))  # type: ignore[arg-type]
    assert seen["n"] == 4
    expected = two_d.copy()
    expected[1, 13:15, 13:15] = 0
    assert np.array_equal(out, expected)
