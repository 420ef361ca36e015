"""The change table: RANO categories at their thresholds, growth per year, the error verdicts, dates (DICOM Type 2
gaps included) and the small-tumour sentence. Pure: masks drawn here, measured by ``lggdemo.measure``."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset

from lggdemo.longitudinal.change import ChangeError, ErrorModel, Visit, change_table, fragility_sentence, visit_date
from lggdemo.longitudinal.rano import percent_change, rano2_volume, rano_lgg
from lggdemo.measure import measure

SPACING = (4.0, 1.0, 1.0)


def ball(radius_mm: float, shape: tuple[int, int, int] = (24, 96, 96)) -> np.ndarray:
    z, y, x = np.indices(shape).astype(float)
    z *= SPACING[0]
    c = np.array([shape[0] / 2 * SPACING[0], shape[1] / 2, shape[2] / 2])
    return ((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) <= radius_mm**2


def visits(r0: float, r1: float, spacing=SPACING, dates=(None, None)) -> tuple[Visit, Visit]:
    m0, m1 = measure(ball(r0), spacing), measure(ball(r1), spacing)
    return (Visit("baseline", "b", dates[0], "entered", m0), Visit("follow-up", "f", dates[1], "entered", m1))


@pytest.mark.parametrize(("change", "lgg", "v2"), [
    (30.0, "progression", "stable disease"), (25.0, "progression", "stable disease"),
    (24.9, "stable disease", "stable disease"), (45.0, "progression", "progression"),
    (-24.9, "stable disease", "stable disease"), (-25.0, "minor response", "stable disease"),
    (-40.0, "minor response", "minor response"), (-50.0, "partial response", "minor response"),
    (-65.0, "partial response", "partial response"),
])
def test_categories_at_their_thresholds(change: float, lgg: str, v2: str) -> None:
    after = 100.0 * (1 + change / 100.0)
    assert rano_lgg(100.0, after, followup_found=True).category == lgg
    assert rano2_volume(100.0, after, followup_found=True).category == v2


def test_complete_response_and_undecidable() -> None:
    assert rano_lgg(100.0, 0.0, followup_found=False).category == "complete response"
    assert rano2_volume(5.0, 0.0, followup_found=False).category == "complete response"
    assert rano_lgg(0.0, 50.0, followup_found=True).category is None  # no baseline lesion: no % change
    assert percent_change(0.0, 3.0) is None and percent_change(2.0, 3.0) == pytest.approx(50.0)
    assert "not seen by the app" in rano_lgg(1.0, 1.0, followup_found=True).note


def test_growth_of_a_ball_mean_diameter_per_year_and_categories() -> None:
    b, f = visits(12.0, 15.0, dates=(dt.date(2020, 1, 1), dt.date(2021, 1, 1)))
    t = change_table(b, f, followup_native=f.measurements)
    assert t.volume_unit == "mL" and t.product_unit == "mm²"
    true_pct = 100 * ((15 / 12) ** 3 - 1)  # 95 %
    assert t.volume_change_pct == pytest.approx(true_pct, abs=8)
    assert t.rano2.category == "progression" and t.rano_lgg.category == "progression"
    assert t.interval_days == 366
    mtd0, mtd1 = t.mean_diameter_mm
    assert t.growth_rate_mm_per_year == pytest.approx((mtd1 - mtd0) / (366 / 365.25))
    assert t.growth_rate_mm_per_year > 0
    d = json.loads(json.dumps(t.to_dict()))
    assert d["rano_lgg"]["category"] == "progression" and "imaging criterion only" in d["imaging_only"]
    assert [r["measure"] for r in t.rows()][0].startswith("Volume, mL")


def test_self_comparison_is_stable_and_within_error() -> None:
    b, f = visits(10.0, 10.0)
    model = ErrorModel((-0.2, 0.2), (-0.3, 0.3), "test", 10)
    t = change_table(b, f, followup_native=f.measurements, error_model=model)
    assert t.volume_change == 0 and t.volume_change_pct == 0
    assert t.rano_lgg.category == "stable disease" and t.rano2.category == "stable disease"
    assert t.volume_verdict.beyond is False and t.volume_verdict.method == "error model"
    assert "needs both visits' dates" in t.growth_note and t.growth_rate_mm_per_year is None


def test_error_model_decides_beyond() -> None:
    b, f = visits(10.0, 13.0)
    narrow = ErrorModel((-0.1, 0.1), (-0.1, 0.1), "test", 10)
    wide = ErrorModel((-1.5, 1.5), (-1.5, 1.5), "test", 10)
    assert change_table(b, f, followup_native=f.measurements, error_model=narrow).volume_verdict.beyond is True
    assert change_table(b, f, followup_native=f.measurements, error_model=wide).volume_verdict.beyond is False


def test_volume_ranges_when_no_error_model() -> None:
    shape = (24, 96, 96)
    prob_small = np.where(ball(8.0, shape), 0.9, 0.0) + np.where(ball(10.0, shape) & ~ball(8.0, shape), 0.5, 0.0)
    m0 = measure(ball(9.0, shape), SPACING, prob_small)
    far = np.where(ball(16.0, shape), 0.9, 0.0)
    m1 = measure(ball(16.0, shape), SPACING, far)
    t = change_table(Visit("baseline", "b", None, "unknown", m0), Visit("follow-up", "f", None, "unknown", m1),
                     followup_native=m1)
    assert t.volume_verdict.method == "volume ranges" and t.volume_verdict.beyond is True
    t_same = change_table(Visit("baseline", "b", None, "unknown", m0), Visit("follow-up", "f", None, "unknown", m0),
                          followup_native=m0)
    assert t_same.volume_verdict.beyond is False


def test_without_spacing_voxels_and_no_growth_rate() -> None:
    b, f = visits(10.0, 12.0, spacing=None, dates=(dt.date(2020, 1, 1), dt.date(2020, 7, 1)))
    t = change_table(b, f, followup_native=f.measurements)
    assert t.volume_unit == "voxels" and t.product_unit == "px²"
    assert t.growth_rate_mm_per_year is None and "voxel spacing" in t.growth_note
    assert t.volume_change_pct is not None and t.rano2.category is not None
    assert any("No voxel spacing" in n for n in t.notes)


def test_follow_up_before_baseline_is_refused() -> None:
    b, f = visits(10.0, 10.0, dates=(dt.date(2021, 1, 1), dt.date(2020, 1, 1)))
    with pytest.raises(ChangeError, match="dated before"):
        change_table(b, f, followup_native=f.measurements)


def test_dates_from_dicom_with_type2_gaps_and_from_kaggle_names() -> None:
    dated, empty, absent = Dataset(), Dataset(), Dataset()
    dated.StudyDate = "20190315"
    empty.StudyDate = ""  # Type 2: present and empty, as anonymisers leave it
    assert visit_date({"dicom_sources": [dated]}, "x") == (dt.date(2019, 3, 15), "DICOM StudyDate")
    assert visit_date({"dicom_sources": [empty]}, "x") == (None, "unknown")
    assert visit_date({"dicom_sources": [absent]}, "scan") == (None, "unknown")
    assert visit_date({}, "TCGA_CS_4941_19960909") == (dt.date(1996, 9, 9), "folder name")
    assert visit_date({}, "patient_20251399") == (None, "unknown")  # not a date


def test_fragility_sentence_scales_with_size() -> None:
    assert "73 %" in fragility_sentence(None)
    small, large = fragility_sentence(10.0), fragility_sentence(50.0)
    assert "73 % of volume" in small and "12 % of volume" in large


def test_error_model_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"volume_log_limits": [-0.1, 0.12], "product_log_limits": [-0.2, 0.25],
                                "source": "x", "n": 12}))
    m = ErrorModel.load(path)
    assert m is not None and m.n == 12
    lo, hi = m.pct_limits("volume")
    assert lo == pytest.approx(100 * (math.exp(-0.1) - 1)) and hi == pytest.approx(100 * (math.exp(0.12) - 1))
    assert ErrorModel.load(tmp_path / "absent.json") is None
    path.write_text("{}")
    with pytest.raises(ChangeError):
        ErrorModel.load(path)


def test_the_shipped_error_model_is_the_experiments() -> None:
    """The model the app uses is the out-of-fold experiment's (docs/experiments/longitudinal-change.json), and it
    cannot call a scan compared with itself a change."""
    shipped = ErrorModel.load()
    assert shipped is not None
    root = Path(__file__).resolve().parents[2]
    experiment = json.loads((root / "docs/experiments/longitudinal-change.json").read_text())["error_model"]
    assert shipped.volume_log_limits == pytest.approx(tuple(experiment["volume_log_limits"]))
    assert shipped.product_log_limits == pytest.approx(tuple(experiment["product_log_limits"]))
    assert shipped.n == experiment["n"] >= 80 and (root / shipped.source).is_file()
    for lo, hi in (shipped.volume_log_limits, shipped.product_log_limits):
        assert lo < 0 < hi
