"""measure() over a whole mask: the volume range, laterality on mirrored phantoms, lesions, no spacing, no tumour;
and agreement() of a mask with its reference."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lggdemo.measure import MeasureError, agreement, measure
from lggdemo.measure.location import SIDE_FRACTION

SPACING = (3.0, 0.9, 0.9)


def _blob_probability(shape: tuple[int, int, int], centre: tuple[float, float, float], radius: float) -> np.ndarray:
    """A smooth probability falling from 1 at ``centre`` through 0.5 at ``radius`` voxels (in-plane units)."""
    s, r, c = np.indices(shape).astype(float)
    dist = np.sqrt(((s - centre[0]) * 3) ** 2 + (r - centre[1]) ** 2 + (c - centre[2]) ** 2)
    return 1.0 / (1.0 + np.exp((dist - radius) / 2.0))


def test_the_volume_range_holds_the_volume_at_0_5() -> None:
    prob = _blob_probability((16, 64, 64), (8, 30, 30), 12.0)
    prob += 0.6 * _blob_probability((16, 64, 64), (8, 30, 58), 3.0)  # an island peaking at 0.49, apart
    island = (prob >= 0.3) & (np.indices(prob.shape)[2] >= 45)
    assert island.any()
    mask = prob >= 0.5
    m = measure(mask, SPACING, prob)
    assert m.volume_range_voxels is not None and m.volume_range_ml is not None
    low, high = m.volume_range_voxels
    assert low < m.volume_voxels < high
    # One lesion: the ends are the 0.7 and 0.3 volumes of that lesion; the island that never reaches 0.3 stays out.
    assert low == int((prob >= 0.7).sum())
    assert high == int(((prob >= 0.3) & (np.indices(prob.shape)[2] < 45)).sum())
    voxel_ml = np.prod(SPACING) / 1000
    assert m.volume_ml == pytest.approx(m.volume_voxels * voxel_ml)
    assert m.volume_range_ml == pytest.approx((low * voxel_ml, high * voxel_ml))


def test_the_range_holds_a_corrected_mask_too() -> None:
    """A mask not drawn from the probability (a user's correction) still lies inside its own range."""
    prob = _blob_probability((12, 48, 48), (6, 24, 24), 8.0)
    mask = prob >= 0.5
    mask[6, 24:40, 24:40] = True  # drawn beyond what the model saw
    mask[6, 22:26, 22:26] = False  # and a hole cut where it was sure
    m = measure(mask, SPACING, prob)
    assert m.volume_range_voxels is not None
    assert m.volume_range_voxels[0] <= m.volume_voxels <= m.volume_range_voxels[1]


def _side_phantom() -> tuple[np.ndarray, np.ndarray]:
    """A head (columns 40..219, midline 129.5, off the image centre) with a tumour in columns 60..99."""
    head = np.zeros((6, 256, 256), bool)
    head[:, 30:230, 40:220] = True
    mask = np.zeros_like(head)
    mask[2:5, 100:140, 60:100] = True
    return mask, head


def test_laterality_on_mirrored_phantoms() -> None:
    """Columns run from the patient's right to left: low columns are the right hemisphere."""
    mask, head = _side_phantom()
    right = measure(mask, SPACING, head=head)
    assert right.laterality == "right" and right.left_fraction == 0.0
    mirrored = measure(mask[:, :, ::-1], SPACING, head=head[:, :, ::-1])
    assert mirrored.laterality == "left" and mirrored.left_fraction == 1.0
    # Mirrored about the head's own midline (129.5), not the image's: the same answer with the head mask.
    about_head = np.zeros_like(mask)
    about_head[:, :, 160:200] = mask[:, :, 60:100][:, :, ::-1]
    assert measure(about_head, SPACING, head=head).laterality == "left"
    assert measure(mask | about_head, SPACING, head=head).laterality == "both"


def test_the_midline_comes_from_the_head_when_given() -> None:
    """A tumour in columns 120..127: right of the image centre (127.5) would call it right; the head's midline
    (here 149.5) calls it right too, but one in columns 132..139 is left of the image centre and still right of
    the head's midline."""
    head = np.zeros((4, 64, 256), bool)
    head[:, :, 50:250] = True  # midline 149.5
    mask = np.zeros_like(head)
    mask[1:3, 20:40, 132:140] = True
    assert measure(mask, SPACING).laterality == "left"  # image centre
    assert measure(mask, SPACING, head=head).laterality == "right"


def test_a_tumour_over_the_midline_is_both_until_nearly_all_is_one_side() -> None:
    mask = np.zeros((4, 64, 256), bool)
    mask[1:3, 20:40, 100:160] = True  # 28 columns right of 127.5, 32 left
    m = measure(mask, SPACING)
    assert m.laterality == "both" and m.left_fraction == pytest.approx(32 / 60)
    lateral = np.zeros_like(mask)
    n_left = int(np.ceil(SIDE_FRACTION * 40))
    lateral[1:3, 20:40, 128:128 + n_left] = True
    lateral[1:3, 20:40, 128 - (40 - n_left):128] = True
    assert measure(lateral, SPACING).laterality == "left"


def test_lesions_are_3d_components_and_diameters_are_the_largest_ones() -> None:
    mask = np.zeros((10, 80, 80), bool)
    mask[2:6, 10:40, 10:30] = True  # large
    mask[5:7, 60:66, 60:66] = True  # small, apart
    mask[6, 40, 30] = True  # touches the large one diagonally across a slice: the same lesion (26-connectivity)
    m = measure(mask, (1.0, 1.0, 1.0))
    assert m.lesions == 2
    assert m.longest is not None and m.longest.length_mm == pytest.approx(np.hypot(30, 20))
    assert 2 <= m.key_slice <= 5
    assert m.volume_voxels == int(mask.sum())
    assert any("2 lesions" in n for n in m.notes)


def test_no_spacing_gives_pixels_and_no_millimetres() -> None:
    mask = np.zeros((5, 64, 64), bool)
    mask[1:4, 10:30, 20:30] = True  # 20 rows x 10 columns
    m = measure(mask, None)
    assert m.volume_ml is None and m.bidimensional_product_mm2 is None and m.measurable is None
    assert m.max_diameter_3d_mm is None and m.mean_diameter_mm is None and m.extent_mm is None
    assert m.longest is not None and m.longest.length_mm is None
    assert m.longest.length_px == pytest.approx(np.hypot(20, 10))
    assert m.bidimensional_product_px2 == pytest.approx(m.longest.length_px * m.perpendicular.length_px)  # type: ignore[union-attr]
    assert m.extent_voxels == (10, 20, 3) and m.volume_voxels == 600


@pytest.mark.parametrize("spacing", [SPACING, None])
@pytest.mark.parametrize("with_prob", [True, False])
def test_no_tumour_is_a_result_not_an_error(spacing: tuple[float, float, float] | None, with_prob: bool) -> None:
    empty = np.zeros((4, 32, 32), bool)
    m = measure(empty, spacing, np.zeros((4, 32, 32)) if with_prob else None)
    assert not m.found and m.summary() == "No tumour found."
    assert m.longest is None and m.perpendicular is None and m.key_slice is None
    assert m.lesions == 0 and m.laterality == "none"
    assert json.loads(json.dumps(m.to_dict()))["found"] is False


def test_to_dict_is_json_and_carries_the_lines() -> None:
    mask = np.zeros((5, 64, 64), bool)
    mask[1:4, 10:30, 20:34] = True
    d = json.loads(json.dumps(measure(mask, SPACING, mask.astype(float)).to_dict()))
    assert d["longest"]["slice"] == d["key_slice"] and len(d["longest"]["p0"]) == 2
    assert d["volume_range_thresholds"] == [0.7, 0.3] and d["measurable"] is True


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"mask": np.zeros((32, 32))}, "slices, rows, columns"),
    ({"probability": np.zeros((4, 32, 31))}, "probability"),
    ({"head": np.zeros((3, 32, 32))}, "head"),
    ({"spacing": (1.0, 0.0, 1.0)}, "positive"),
    ({"spacing": (1.0, 1.0)}, "three"),
])
def test_bad_inputs_raise_a_clear_error(kwargs: dict, match: str) -> None:
    args = {"mask": np.ones((4, 32, 32), bool), "spacing": SPACING, **kwargs}
    with pytest.raises(MeasureError, match=match):
        measure(**args)


def test_agreement_of_a_mask_with_itself_and_a_larger_one() -> None:
    ref = np.zeros((8, 64, 64), bool)
    ref[2:6, 10:40, 10:30] = True
    same = agreement(ref, ref, SPACING)
    assert same.dice == 1.0 and same.hd95_mm == 0.0 and same.volume_diff_pct == 0.0
    assert same.product_diff_pct == pytest.approx(0.0) and same.measurable_agrees is True
    bigger = ref.copy()
    bigger[2:6, 10:40, 30:35] = True  # 25 columns instead of 20: +25% volume
    a = agreement(bigger, ref, SPACING)
    assert a.volume_diff_pct == pytest.approx(25.0)
    assert a.product_diff_pct is not None and a.product_diff_pct > 0
    assert a.hd95_mm is not None and 0 < a.hd95_mm <= 5 * SPACING[2] + 1e-6
    assert a.distance_units == "mm" and a.empty == "none"
    missed = agreement(np.zeros_like(ref), ref, SPACING)
    assert missed.hd95_mm is None and missed.volume_diff_pct == -100.0 and missed.product_diff_pct == -100.0
    assert missed.empty == "prediction" and missed.measurable_agrees is False
    voxels = agreement(bigger, ref, None)
    assert voxels.distance_units == "voxels" and voxels.measurable_agrees is None
    assert voxels.volume_diff_pct == pytest.approx(25.0)
    json.dumps(a.to_dict())
