"""Studies as scanners make them, built here in world coordinates: sequences on their own grids are resampled onto
FLAIR's, an oblique axial keeps its true affine, and a structure placed at known world coordinates lands in the FLAIR
voxels it covers -- in the volume, the NIfTI mask and the DICOM SEG."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from patient_files import (
    CENTRE,
    STRUCTURE_LPS,
    T1_COARSE,
    T1_THICK,
    Study,
    blob_mask,
    channel_structure,
    fake_prediction,
    make_study,
    phantom_field,
    structure_voxels,
    tilted_axial,
    vol_display,
    voxel_lps,
    world_series,
    zipped,
)

from lggdemo.patient.exporters import mask_dicom_seg, mask_nifti
from lggdemo.patient.readers import open_files
from lggdemo.patient.readers.nifti import load_nifti, nifti_volume
from lggdemo.patient.readers.resample import resample_onto
from lggdemo.patient.volume import Volume, VolumeError


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def centroid_lps(affine_ras: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return voxel_lps(affine_ras, mask.shape)[mask.astype(bool)].mean(axis=0)


def check_structure(vol: Volume, channel: int, min_dice: float, max_shift_mm: float) -> np.ndarray:
    found = channel_structure(vol, channel)
    expected = structure_voxels(vol.grid.affine, vol.grid.shape)
    assert dice(found, expected) >= min_dice, dice(found, expected)
    shift = np.abs(centroid_lps(vol.grid.affine, found) - np.asarray(STRUCTURE_LPS))
    assert shift.max() <= max_shift_mm, shift
    return found


def check_outputs(vol: Volume, study: Study, found: np.ndarray) -> None:
    """NIfTI with FLAIR's affine and shape; a SEG referencing FLAIR, frame by frame; the structure where it was."""
    import highdicom as hd

    display = vol_display(vol, found).astype(np.uint8)
    prediction = fake_prediction(vol, display)
    nii = nib.Nifti1Image.from_bytes(gzip.decompress(mask_nifti(vol, prediction)))
    assert nii.shape == study.flair_shape and np.allclose(nii.affine, study.flair_affine, atol=1e-4)
    data = np.asarray(nii.dataobj).astype(bool)
    assert np.array_equal(data, found)
    assert np.abs(centroid_lps(nii.affine, data) - np.asarray(STRUCTURE_LPS)).max() < 1.5
    seg = hd.seg.segread(io.BytesIO(mask_dicom_seg(vol, prediction)))
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == vol.provenance.series_uids[1]  # FLAIR's
    uids = [ds.SOPInstanceUID for ds in vol.extra["dicom_sources"]]
    frames = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1])[..., 0]
    assert np.array_equal(np.transpose(frames, (2, 1, 0)).astype(bool), found)  # (slices, rows, cols) -> grid


def test_t1_at_half_resolution_is_resampled_onto_flair() -> None:
    """T1 pre/post at 128x128 x 1.8 mm, FLAIR at 256x256 x 0.9 mm."""
    study = make_study(t1=T1_COARSE)
    vol = open_files([("grids.zip", zipped(study.files))], "grids").volume()
    assert vol.grid.shape == study.flair_shape and np.allclose(vol.grid.affine, study.flair_affine, atol=1e-4)
    assert vol.n_slices == 40 and vol.spacing == pytest.approx((0.9, 0.9, 0.9), abs=1e-4)
    resampled = [n for n in vol.provenance.notes if "was on its own grid" in n]
    assert len(resampled) == 2 and all("(128×128×20 at 1.80×1.80×1.80 mm)" in n and
                                       "onto FLAIR's (256×256×40 at 0.90×0.90×0.90 mm)" in n for n in resampled)
    check_structure(vol, 1, min_dice=0.99, max_shift_mm=0.05)  # FLAIR itself: sampled on its own voxels
    for channel in (0, 2):
        found = check_structure(vol, channel, min_dice=0.95, max_shift_mm=0.3)
    check_outputs(vol, study, found)


def test_t1_with_thick_slices_offset_from_flairs() -> None:
    """T1 with 6 mm slices whose positions are 2.5 mm off FLAIR's: interpolated between its slices."""
    study = make_study(t1=T1_THICK, t1_centre=(CENTRE[0], CENTRE[1], CENTRE[2] + 2.5))
    vol = open_files(study.files, "thick").volume()
    assert any("(256×256×7 at 0.90×0.90×6.00 mm)" in n for n in vol.provenance.notes)
    found = check_structure(vol, 0, min_dice=0.9, max_shift_mm=0.5)
    check_outputs(vol, study, found)


def test_ten_degree_oblique_axial_keeps_its_true_affine() -> None:
    study = make_study(flair_orientation=tilted_axial(10.0), t1=T1_COARSE)
    vol = open_files(study.files, "tilted").volume()
    assert np.allclose(vol.grid.affine, study.flair_affine, atol=1e-4)
    assert np.degrees(np.max(nib.affines.obliquity(vol.grid.affine))) == pytest.approx(10.0, abs=0.01)
    assert any("oblique by up to 10°" in n for n in vol.provenance.notes)
    check_structure(vol, 1, min_dice=0.99, max_shift_mm=0.05)
    found = check_structure(vol, 0, min_dice=0.95, max_shift_mm=0.3)  # an untilted T1 onto the tilted FLAIR
    check_outputs(vol, study, found)


def test_sagittal_t1_is_resampled_onto_an_axial_flair() -> None:
    sagittal = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
    study = make_study(t1={"shape": (64, 96, 96), "spacing": (1.8, 1.8, 1.8)}, t1_orientation=sagittal)
    vol = open_files(study.files, "sag").volume()
    assert any("(96×96×64 at 1.80×1.80×1.80 mm)" in n for n in vol.provenance.notes)
    check_structure(vol, 2, min_dice=0.95, max_shift_mm=0.3)


def test_study_without_birth_date_exports_on_flairs_grid() -> None:
    study = make_study(t1=T1_COARSE, drop=("PatientBirthDate",))
    vol = open_files(study.files, "anon").volume()
    assert all("PatientBirthDate" not in ds for ds in vol.extra["dicom_sources"])
    check_outputs(vol, study, check_structure(vol, 0, min_dice=0.95, max_shift_mm=0.3))


@pytest.mark.parametrize("orientation, message", [
    (tilted_axial(25.0), "tilted 25° from axial .*only axial series are read as FLAIR"),
    ((1.0, 0.0, 0.0, 0.0, 0.0, -1.0), "the slices are coronal .*only axial series are read as FLAIR"),
])
def test_flair_that_is_not_axial_is_refused(orientation: tuple[float, ...], message: str) -> None:
    from pydicom.uid import generate_uid

    files = world_series("FLAIR", shape=(6, 64, 64), spacing=(3.0, 3.0, 3.0), orientation=orientation,
                         study_uid=generate_uid(), for_uid=generate_uid())
    with pytest.raises(VolumeError, match=message):
        open_files(files, "bad").volume()


def test_sequences_that_do_not_overlap_are_refused() -> None:
    study = make_study(t1=T1_COARSE, t1_centre=(0.0, 0.0, 400.0))
    with pytest.raises(VolumeError, match=r"series 'T1 pre' \(128×128×20 at 1\.80×1\.80×1\.80 mm\) and FLAIR .* do "
                                          r"not overlap in space: 0% of FLAIR's voxels"):
        open_files(study.files, "apart").volume()


def test_nifti_sequences_and_mask_on_their_own_grids(tmp_path: Path) -> None:
    """The NIfTI path: T1 and a ground-truth mask at 1.8 mm onto a 0.9 mm FLAIR, the mask by nearest neighbour."""
    def grid(shape: tuple[int, int, int], step: float) -> np.ndarray:
        affine = np.diag([step, step, step, 1.0])
        affine[:3, 3] = -(np.asarray(shape) - 1) / 2 * step + np.array([0.0, 0.0, CENTRE[2]])
        return affine

    flair_aff, t1_aff = grid((256, 256, 40), 0.9), grid((128, 128, 20), 1.8)
    flair = phantom_field(voxel_lps(flair_aff, (256, 256, 40)))
    t1 = phantom_field(voxel_lps(t1_aff, (128, 128, 20)))
    truth = structure_voxels(t1_aff, (128, 128, 20)).astype(np.uint8)
    inputs = [load_nifti(nib.Nifti1Image(a, aff).to_bytes(), n) for a, aff, n in
              ((flair, flair_aff, "flair.nii"), (t1, t1_aff, "t1.nii"), (truth, t1_aff, "mask.nii"))]
    vol = nifti_volume(inputs, {"FLAIR": 0, "pre-contrast": 1, "post-contrast": None, "ground-truth mask": 2})
    assert np.allclose(vol.grid.affine, flair_aff, atol=1e-5) and vol.grid.shape == (256, 256, 40)
    assert sum("was on its own grid" in n for n in vol.provenance.notes) == 2
    check_structure(vol, 0, min_dice=0.95, max_shift_mm=0.3)
    expected = vol_display(vol, structure_voxels(flair_aff, (256, 256, 40)))
    assert vol.truth is not None and dice(vol.truth, expected) > 0.9
    assert set(np.unique(vol.truth)) <= {False, True}
    out = nib.Nifti1Image.from_bytes(gzip.decompress(mask_nifti(vol, fake_prediction(vol, vol.truth))))
    assert np.allclose(out.affine, flair_aff, atol=1e-5) and out.shape == (256, 256, 40)


def test_resample_onto_puts_a_point_where_the_affines_say() -> None:
    """The library call alone: one bright voxel at a known world point, on a grid rotated and shifted against the
    reference, lands on the reference voxel that holds that point; outside the field of view is 0."""
    src = np.zeros((20, 20, 20), np.int16) + 10
    src[5, 7, 9] = 1000
    rot = nib.eulerangles.euler2mat(0.3, 0.1, -0.2)
    src_aff = np.eye(4)
    src_aff[:3, :3] = rot * 2.0
    src_aff[:3, 3] = (-3.0, 4.0, 1.0)
    world = src_aff @ np.array([5, 7, 9, 1.0])
    ref_aff = np.diag([1.0, 1.0, 1.0, 1.0])
    ref_aff[:3, 3] = world[:3] - np.array([30.0, 30.0, 30.0])  # the point is reference voxel (30, 30, 30)
    out = resample_onto(src, src_aff, (60, 60, 60), ref_aff, what="t1")
    assert out.data.dtype == np.int16 and np.unravel_index(np.argmax(out.data), out.data.shape) == (30, 30, 30)
    assert out.data[0, 0, 0] == 0 and 0.05 < out.overlap < 0.99 and "covers" in out.note
    nearest = resample_onto((src > 100).astype(np.uint8), src_aff, (60, 60, 60), ref_aff, what="m", mask=True)
    assert nearest.data[30, 30, 30] == 1 and set(np.unique(nearest.data)) == {0, 1}


def test_a_blob_mask_round_trips_through_the_oblique_flair_grid() -> None:
    """A mask drawn in the display layout goes back onto the tilted FLAIR's own voxels exactly (no interpolation)."""
    study = make_study(flair_orientation=tilted_axial(10.0))
    vol = open_files(study.files, "tilted").volume()
    mask = blob_mask(vol.slices.shape[:3])
    on_grid = vol.mask_on_source_grid(mask)
    assert np.array_equal(vol_display(vol, on_grid.astype(bool)), mask.astype(bool))
