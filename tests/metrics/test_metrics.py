"""Pure metrics (numpy + sklearn, no torch): hand-checked values (``lggdemo.metrics``)."""

from __future__ import annotations

import numpy as np
import pytest

from lggdemo.metrics.bootstrap import bootstrap_ci
from lggdemo.metrics.calibration import Platt
from lggdemo.metrics.grade import (
    accuracy,
    accuracy_rows,
    balanced_accuracy,
    balanced_accuracy_rows,
    brier,
    cross_fitted_platt,
    fit_platt,
    log_loss_g3,
    reliability_bins,
    roc_auc,
    roc_auc_rows,
)
from lggdemo.metrics.segmentation import (
    dice,
    evaluate_segmentation,
    per_volume_dice,
    tumour_slice_dice,
    tumour_slice_dice_by_area,
)


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
    lo, hi = bootstrap_ci(roc_auc_rows, y, s, n_boot=500)
    assert lo < roc_auc(y, s) < hi
    assert 0 <= lo < hi <= 1
    assert bootstrap_ci(roc_auc_rows, [1, 1, 1], [0.1, 0.2, 0.3]) is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_row_metrics_are_sklearns_on_every_resample(seed: int) -> None:
    """The bootstrap's vectorised metrics give sklearn's numbers, ties included (scores rounded to tenths)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, (40, 9))
    y[:, 0], y[:, 1] = 0, 1  # both classes in every row, as the bootstrap guarantees
    s = np.round(rng.random((40, 9)), 1)
    for fn, rows in ((roc_auc, roc_auc_rows), (accuracy, accuracy_rows), (balanced_accuracy, balanced_accuracy_rows)):
        assert rows(y, s) == pytest.approx([fn(a, b) for a, b in zip(y, s)], abs=1e-12), fn.__name__


def test_bootstrap_interval_is_the_per_resample_loops() -> None:
    """Scoring every resample at once keeps the interval a loop over the same resamples gives."""
    rng = np.random.default_rng(4)
    y, s = rng.integers(0, 2, 25), np.round(rng.random(25), 2)
    draw, loop = np.random.default_rng(9), []
    while len(loop) < 300:
        idx = draw.integers(0, 25, 25)
        if len(np.unique(y[idx])) == 2:
            loop.append(roc_auc(y[idx], s[idx]))
    assert bootstrap_ci(roc_auc_rows, y, s, n_boot=300, seed=9) == pytest.approx(tuple(np.percentile(loop, [2.5, 97.5])))


def test_tumour_slice_dice_by_area_splits_slices_by_true_size() -> None:
    truth = np.zeros((3, 64, 64), np.uint8)
    truth[0, :10, :10] = 1  # 100 px: missed
    truth[1, :40, :40] = 1  # 1600 px: found
    pred = truth.copy()
    pred[0] = 0
    bins = tumour_slice_dice_by_area(pred, truth)  # slice 2 has no tumour and is in no bin
    assert bins == {"1-255 px": {"n": 1, "dice": 0.0}, "1024-4095 px": {"n": 1, "dice": 1.0}}
    assert np.mean([b["dice"] for b in bins.values()]) == pytest.approx(tumour_slice_dice(pred, truth))


def test_brier_and_log_loss_hand_cases() -> None:
    assert brier([0, 1], [0.5, 0.5]) == pytest.approx(0.25)
    assert brier([0, 1, 1], [0.0, 1.0, 0.5]) == pytest.approx(0.25 / 3)
    assert log_loss_g3([0, 1], [0.5, 0.5]) == pytest.approx(np.log(2))
    assert log_loss_g3([1], [1.0]) == pytest.approx(0.0, abs=1e-5)  # clipped, never infinite
    assert np.isfinite(log_loss_g3([0], [1.0]))


def test_reliability_bins_count_every_patient_in_sklearn_bins() -> None:
    y = [0, 0, 1, 1, 1, 0]
    p = [0.1, 0.4, 0.4, 0.65, 0.9, 0.95]  # 0.4 sits on an edge: counted where calibration_curve puts it
    bins = reliability_bins(y, p, n_bins=5)
    assert sum(b["n"] for b in bins) == len(y)
    edge = next(b for b in bins if b["predicted"] == pytest.approx(0.4))
    assert edge["n"] == 2 and edge["observed"] == pytest.approx(0.5)
    assert [b["predicted"] for b in bins] == sorted(b["predicted"] for b in bins)


def test_platt_is_sklearns_logistic_regression_on_the_logit() -> None:
    from sklearn.linear_model import LogisticRegression

    z, y = np.array([-2.0, -1.0, -0.5, 0.2, 0.4, 1.0, 1.5, 3.0]), np.array([0, 0, 1, 0, 1, 1, 0, 1])
    platt = fit_platt(z, y)
    ref = LogisticRegression().fit(z[:, None], y)
    assert platt.apply(z) == pytest.approx(ref.predict_proba(z[:, None])[:, 1])
    assert Platt.from_dict(platt.to_dict()) == platt
    assert Platt.from_dict({"a": "x", "b": 0, "n": 3}) is None and Platt.from_dict(None) is None
    with pytest.raises(ValueError, match="both grades"):
        fit_platt(z[:3], [0, 0, 0])


def test_cross_fitted_platt_never_scores_a_group_with_its_own_fit() -> None:
    """Each group's calibrated values come from a Platt fitted on the other groups only: changing a group's own
    labels leaves them exactly as they were."""
    rng = np.random.default_rng(1)
    z, y, g = rng.normal(size=30), np.arange(30) % 2, np.arange(30) % 3
    before = cross_fitted_platt(z, y, g)
    y2 = y.copy()
    y2[g == 1] = 1 - y2[g == 1]
    after = cross_fitted_platt(z, y2, g)
    assert np.array_equal(before[g == 1], after[g == 1])
    assert not np.allclose(before[g != 1], after[g != 1])
    held = g == 0
    assert before[held] == pytest.approx(fit_platt(z[~held], y[~held]).apply(z[held]))
