"""The one scoring module: measurements against the truth per patient and for the cohort, the statistics under
them, and the evaluate CLI's JSON built from it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lggdemo.evaluation.scoring import score_measurements
from lggdemo.metrics.agreement import bland_altman, median_abs_pct_error
from lggdemo.metrics.bootstrap import median_ci

SPACING = (5.0, 0.9, 0.9)


def test_bland_altman_and_median_error_by_hand() -> None:
    ba = bland_altman([12.0, 20.0, 31.0], [10.0, 20.0, 30.0])  # differences 2, 0, 1
    assert ba is not None and ba.bias == pytest.approx(1.0) and ba.sd == pytest.approx(1.0)
    assert (ba.loa_low, ba.loa_high) == pytest.approx((1 - 1.96, 1 + 1.96)) and ba.n == 3
    one = bland_altman([1.0], [2.0])
    assert one is not None and one.bias == -1.0 and one.loa_low is None
    assert bland_altman([], []) is None
    assert median_abs_pct_error([-10.0, 5.0, None, 20.0]) == (10.0, 3)
    assert median_abs_pct_error([None]) == (None, 0)
    lo, hi = median_ci([1.0, 2.0, 3.0, 4.0, 100.0])  # type: ignore[misc]
    assert 1.0 <= lo <= 3.0 <= hi <= 100.0


def _patients() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three patients of 6 slices: A predicted exactly, B 25% too wide, C missed entirely (truth 6x6 px)."""
    truth = np.zeros((18, 64, 64), np.uint8)
    pred = np.zeros_like(truth)
    truth[1:5, 10:40, 10:30] = 1  # A: 30 x 20 px
    pred[1:5, 10:40, 10:30] = 1
    truth[7:11, 20:40, 20:40] = 1  # B: 20 x 20 px
    pred[7:11, 20:40, 20:45] = 1  # 20 x 25 px
    truth[14:16, 30:36, 30:36] = 1  # C: 6 x 6 px, not found
    ids = np.repeat(["A", "B", "C"], 6)
    return pred, truth, ids


def test_measurements_per_patient_and_for_the_cohort() -> None:
    pred, truth, ids = _patients()
    out = score_measurements(pred, truth, ids, SPACING)
    per, cohort = out["per_patient"], out["cohort"]
    assert per["A"]["volume_diff_pct"] == 0.0 and per["A"]["hd95_mm"] == 0.0
    assert per["B"]["volume_diff_pct"] == pytest.approx(25.0)
    assert per["C"]["volume_diff_pct"] == -100.0 and per["C"]["hd95_mm"] is None and per["C"]["empty"] == "prediction"
    assert per["B"]["truth"]["volume_ml"] == pytest.approx(4 * 20 * 20 * 5.0 * 0.81 / 1000)
    # Volume: |errors| 0, 25, 100 -> median 25; Bland-Altman of predicted - true in mL.
    vol = cohort["volume"]
    assert vol["median_abs_pct_error"] == pytest.approx(25.0) and vol["n_pct"] == 3
    voxel_ml = 5.0 * 0.81 / 1000
    diffs = np.array([0.0, 4 * 20 * 5 * voxel_ml, -2 * 6 * 6 * voxel_ml])
    assert vol["bland_altman"]["bias"] == pytest.approx(diffs.mean())
    assert vol["bland_altman"]["loa_high"] == pytest.approx(diffs.mean() + 1.96 * diffs.std(ddof=1))
    # Measurable (both diameters >= 10 mm at 0.9 mm pixels): A yes/yes, B yes/yes; C's truth is a 6 x 6 px square,
    # whose diameters are its diagonals, 6·√2·0.9 = 7.6 mm -> no, and the empty prediction no: all three agree.
    assert cohort["measurable"]["agreement_rate"] == 1.0 and cohort["measurable"]["both"] == 2
    assert cohort["units"] == {"volume": "mL", "product": "mm²", "distance": "mm"}
    s = cohort["surface"]
    assert s["hd95_mm"]["n"] == 2 and s["undefined_distance"] == 1  # C's distance is undefined, not averaged in
    assert s["dice"]["n"] == 3 and s["dice"]["median"] == pytest.approx(2 * 1600 / (1600 + 2000), abs=1e-4)
    json.dumps(out)


def test_without_a_spacing_the_units_say_so_and_ratios_stay() -> None:
    pred, truth, ids = _patients()
    out = score_measurements(pred, truth, ids, None)
    cohort = out["cohort"]
    assert cohort["units"] == {"volume": "voxels", "product": "px²", "distance": "voxels"}
    assert cohort["measurable"] is None
    assert out["per_patient"]["B"]["volume_diff_pct"] == pytest.approx(25.0)
    assert cohort["volume"]["bland_altman"]["bias"] == pytest.approx((0 + 4 * 20 * 5 - 2 * 36) / 3)


def test_slices_are_sorted_by_number_when_given() -> None:
    """Slices arriving in file order 1, 3, 2, 4 with tumour on 1 and 3: stacked by number they are two lesions
    (slice 2 between them is empty); stacked as they came, one."""
    truth = np.zeros((4, 32, 32), np.uint8)
    truth[0, 5:15, 5:15] = 1  # number 1
    truth[1, 5:15, 5:15] = 1  # number 3
    ids = ["P"] * 4
    as_given = score_measurements(truth, truth, ids, SPACING)["per_patient"]["P"]["truth"]
    by_number = score_measurements(truth, truth, ids, SPACING, numbers=[1, 3, 2, 4])["per_patient"]["P"]["truth"]
    assert (as_given["lesions"], by_number["lesions"]) == (1, 2)


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
def test_the_evaluate_cli_adds_measurements_of_the_same_masks(tiny_weights: Path, synthetic_root: Path,
                                                              tmp_path: Path) -> None:
    from lggdemo.evaluate import main

    out = tmp_path / "eval.json"
    three = ",".join(sorted(p.name for p in synthetic_root.iterdir() if p.is_dir())[:3])  # enough to pair the keys
    assert main(["--data", str(synthetic_root), "--patients", three, "--weights", str(tiny_weights), "--engine",
                 "torch", "--spacing", "5,0.9,0.9", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    per_dice = doc["segmentation"]["per_patient_dice"]
    per = doc["measurements"]["per_patient"]
    assert set(per) == set(per_dice) == set(three.split(","))
    for pid, d in per_dice.items():  # the measurements describe the very masks the Dice scored
        assert per[pid]["dice"] == pytest.approx(d, abs=1e-4)
        assert per[pid]["distance_units"] == "mm"
    assert doc["measurements"]["spacing_mm"] == [5.0, 0.9, 0.9]
    assert doc["measurements"]["cohort"]["n"] == len(per_dice)
    with pytest.raises(SystemExit) as bad:
        main(["--data", str(synthetic_root), "--weights", str(tiny_weights), "--spacing", "5,0,1"])
    assert bad.value.code == 2
