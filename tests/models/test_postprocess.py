"""Post-processing on hand-built masks with known components; the 2D rule is what masks_from_logits applies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lggdemo.models.networks import SegConfig, masks_from_logits
from lggdemo.models.postprocess import (
    DEFAULT_MIN_FRACTION,
    keep_main_components_3d,
    keep_main_components_by_patient,
    patient_rule_text,
    remove_small_components_2d,
)


def _cube(shape: tuple[int, int, int], lo: tuple[int, int, int], size: int) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    m[lo[0]:lo[0] + size, lo[1]:lo[1] + size, lo[2]:lo[2] + size] = 1
    return m


def test_3d_keeps_largest_and_large_satellites_drops_specks() -> None:
    shape = (20, 64, 64)
    main = _cube(shape, (2, 5, 5), 10)  # 1000 voxels
    satellite = _cube(shape, (2, 40, 40), 5)  # 125 voxels = 12.5% of the largest
    speck = _cube(shape, (15, 50, 5), 2)  # 8 voxels
    masks = main | satellite | speck
    assert DEFAULT_MIN_FRACTION == 1.0  # the rule adopted in docs/experiments/selection-rule.txt (P1)
    assert np.array_equal(keep_main_components_3d(masks), main)  # Buda et al.: the largest only
    assert np.array_equal(keep_main_components_3d(masks, 0.1), main | satellite)  # the fraction stays available
    assert np.array_equal(keep_main_components_3d(masks, 0.005), masks)


def test_3d_keeps_one_component_when_two_tie() -> None:
    shape = (10, 32, 32)
    a, b = _cube(shape, (1, 2, 2), 4), _cube(shape, (1, 20, 20), 4)
    kept = keep_main_components_3d(a | b)
    assert kept.sum() == 64 and (np.array_equal(kept, a) or np.array_equal(kept, b))


def test_by_patient_applies_the_rule_to_each_patient_alone() -> None:
    shape = (6, 32, 32)
    p1 = _cube(shape, (0, 2, 2), 5) | _cube(shape, (0, 25, 25), 2)  # a 125-voxel tumour and an 8-voxel speck
    p2 = _cube(shape, (3, 10, 10), 2)  # a small tumour: the largest of *its* patient, so it stays
    # interleaved order, each patient's slices in slice order
    masks = np.empty((12, 32, 32), np.uint8)
    ids = np.array(["A", "B"] * 6)
    masks[ids == "A"], masks[ids == "B"] = p1, p2
    out = keep_main_components_by_patient(masks, ids.tolist())
    assert np.array_equal(out[ids == "A"], keep_main_components_3d(p1)) and out[ids == "A"].sum() == 125
    assert np.array_equal(out[ids == "B"], p2)
    # stacking both patients as one volume would have dropped patient B's tumour altogether
    assert keep_main_components_3d(np.concatenate([p1, p2])).sum() == 125
    with pytest.raises(ValueError, match="one patient id per slice"):
        keep_main_components_by_patient(masks, ["A"] * 11)


def test_rule_text_names_the_2d_and_the_3d_step() -> None:
    assert patient_rule_text(64) == "2D components < 64 px removed, then the largest 3D component per patient"
    assert "10%" in patient_rule_text(64, 0.1)


def test_3d_connects_diagonally_across_slices() -> None:
    m = np.zeros((3, 8, 8), np.uint8)
    m[0, 2, 2] = m[1, 3, 3] = m[2, 4, 4] = 1  # one voxel per slice, touching only at corners
    m[0, 7, 7] = 1  # alone
    kept = keep_main_components_3d(m, 1.0)
    assert kept.sum() == 3 and kept[0, 7, 7] == 0


def test_3d_empty_and_bad_arguments() -> None:
    assert keep_main_components_3d(np.zeros((4, 8, 8), np.uint8)).sum() == 0
    with pytest.raises(ValueError, match="min_fraction"):
        keep_main_components_3d(np.zeros((4, 8, 8)), 0.0)
    with pytest.raises(ValueError, match="stacked"):
        keep_main_components_3d(np.zeros((8, 8)))


def test_2d_rule_removes_small_components_per_slice() -> None:
    m = np.zeros((2, 32, 32), np.uint8)
    m[0, 2:12, 2:12] = 1  # 100 px
    m[0, 20:23, 20:23] = 1  # 9 px
    m[1, 5:8, 5:8] = 1  # 9 px on another slice
    out = remove_small_components_2d(m.copy(), 10)
    assert out[0].sum() == 100 and out[1].sum() == 0
    assert np.array_equal(remove_small_components_2d(m.copy(), 0), m)


def test_masks_from_logits_uses_the_2d_rule() -> None:
    logits = torch.full((1, 1, 32, 32), -5.0)
    logits[0, 0, 2:12, 2:12] = 5.0
    logits[0, 0, 20:23, 20:23] = 5.0
    expected = remove_small_components_2d((logits[:, 0] > 0).numpy().astype(np.uint8), 10)
    assert np.array_equal(masks_from_logits(logits, SegConfig(min_component_px=10), 32), expected)
    assert masks_from_logits(logits, SegConfig(min_component_px=0), 32).sum() == 109
