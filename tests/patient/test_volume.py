"""The Volume layout: the display <-> canonical steps are inverses, and a mask goes back onto the source grid."""

from __future__ import annotations

import numpy as np
import pytest

from lggdemo.patient.volume import (
    Provenance,
    SourceGrid,
    Volume,
    VolumeError,
    canonical_to_display,
    display_to_canonical,
    from_canonical,
    to_canonical,
)


def test_display_layout_is_radiological_and_invertible() -> None:
    rng = np.random.default_rng(0)
    canon = rng.integers(0, 255, (5, 6, 7, 3)).astype(np.uint8)  # (x, y, z, c)
    disp = canonical_to_display(canon)
    assert disp.shape == (7, 6, 5, 3)
    # slice 0 is the bottom (smallest z: the kaggle_3m layout's slice 1 is inferior), row 0 the front (largest y),
    # column 0 the patient's right (largest x: RAS+ x points to the right)
    assert np.array_equal(disp[0, 0, 0], canon[4, 5, 0])
    assert np.array_equal(disp[-1, -1, -1], canon[0, 0, 6])
    assert np.array_equal(display_to_canonical(disp), canon)


@pytest.mark.parametrize("axcodes", [("L", "P", "S"), ("R", "A", "S"), ("A", "S", "L"), ("P", "I", "R")])
def test_reorientation_round_trips_exactly(axcodes: tuple[str, str, str]) -> None:
    import nibabel as nib
    from nibabel.orientations import axcodes2ornt, ornt_transform

    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    img = nib.Nifti1Image(data, np.diag([2.0, 3.0, 4.0, 1.0]))
    src = img.as_reoriented(ornt_transform(axcodes2ornt(("R", "A", "S")), axcodes2ornt(axcodes)))
    canon, canon_affine, ornt = to_canonical(np.asarray(src.dataobj), src.affine)
    assert np.array_equal(canon, data) and np.allclose(canon_affine, img.affine)
    assert np.array_equal(from_canonical(canon, ornt, src.shape), np.asarray(src.dataobj).astype(np.uint8))
    assert np.array_equal(from_canonical(canon, ornt, src.shape).astype(int), np.asarray(src.dataobj) % 256)


def test_volume_refuses_wrong_slices_and_mismatched_masks() -> None:
    grid = SourceGrid(np.eye(4), (256, 256, 2), np.array([[0, 1], [1, 1], [2, 1]], float), (256, 256))
    with pytest.raises(VolumeError, match="uint8"):
        Volume(np.zeros((2, 128, 128, 3), np.uint8), None, grid, Provenance("kaggle", ()), "x")
    vol = Volume(np.zeros((2, 256, 256, 3), np.uint8), (2.0, 1.0, 1.0), grid, Provenance("kaggle", ()), "x")
    assert vol.voxel_ml == pytest.approx(0.002)
    with pytest.raises(VolumeError, match="does not match"):
        vol.mask_on_source_grid(np.zeros((3, 256, 256), np.uint8))
