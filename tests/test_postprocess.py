"""Post-processing on hand-built masks with known components; the 2D rule is what masks_from_logits applies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lggdemo.models import SegConfig, masks_from_logits
from lggdemo.postprocess import keep_main_components_3d, remove_small_components_2d


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
    kept = keep_main_components_3d(masks)  # default 10%
    assert np.array_equal(kept, main | satellite)
    assert np.array_equal(keep_main_components_3d(masks, 1.0), main)  # Buda et al.: the largest only
    assert np.array_equal(keep_main_components_3d(masks, 0.005), masks)


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
