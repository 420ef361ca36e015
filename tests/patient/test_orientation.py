"""Directions named from the data: the display affine of every kind of input, the Kaggle stand-in affine and the
voxel size a user gives it, in-plane turns that keep the way back to the source grid, and the head-lie check."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from patient_files import blob_mask, dataset_patient, dicom_study_zip, fake_prediction, write_nifti_4d

from lggdemo.data.directions import KAGGLE_EDGES, EdgeLetters, axis_words, slice_label
from lggdemo.patient.exporters import mask_nifti
from lggdemo.patient.orientation import (
    TURN_CHOICES,
    check_lie,
    display_affine,
    display_axcodes,
    edge_letters,
    reorient,
)
from lggdemo.patient.orientation import slice_label as volume_slice_label
from lggdemo.patient.readers import open_files, open_path
from lggdemo.patient.readers.kaggle import with_voxel_size
from lggdemo.patient.volume import PlaneTurn, VolumeError


@pytest.fixture(scope="module")
def patient(synthetic_root: Path):  # noqa: ANN201
    return dataset_patient(synthetic_root)


def _nifti(data: bytes) -> nib.Nifti1Image:
    return nib.Nifti1Image.from_bytes(gzip.decompress(data))


def test_words_and_letters_of_the_kaggle_layout() -> None:
    assert slice_label() == "Slice (inferior → superior)" and axis_words("I") == "superior → inferior"
    assert KAGGLE_EDGES == EdgeLetters(top="A", bottom="P", left="R", right="L")
    assert EdgeLetters.from_axcodes("A", "R") == EdgeLetters(top="P", bottom="A", left="L", right="R")


@pytest.mark.parametrize("kind", ["kaggle", "nifti-LPS", "nifti-ASL", "nifti-PIR", "dicom"])
def test_every_input_is_laid_out_inferior_to_superior_with_the_right_at_the_left(patient, kind: str,
                                                                                tmp_path: Path) -> None:  # noqa: ANN001
    if kind == "kaggle":
        vol = patient
    elif kind == "dicom":
        vol = open_files([("study.zip", dicom_study_zip(patient.slices, three=False))], "study").volume()
    else:
        axcodes = tuple(kind.split("-")[1])
        vol = open_path(write_nifti_4d(tmp_path / "p.nii.gz", patient.slices, axcodes=axcodes)).volume()
    assert np.array_equal(vol.slices[..., 1], patient.slices[..., 1])  # every reader gives the Kaggle layout back
    assert display_axcodes(vol.grid) == ("S", "P", "L")
    assert volume_slice_label(vol.grid) == "Slice (inferior → superior)"
    assert edge_letters(vol.grid) == KAGGLE_EDGES
    affine = display_affine(vol.grid)
    # slice 1 lies below the last slice, row 0 in front of row 255, column 0 on the patient's right of column 255
    first, last = affine @ [0, 0, 0, 1], affine @ [vol.n_slices - 1, 255, 255, 1]
    assert first[2] < last[2] and first[1] > last[1] and first[0] > last[0]


@pytest.mark.parametrize("axcodes", [("L", "P", "S"), ("A", "S", "L"), ("P", "I", "R")])
def test_display_affine_agrees_with_the_way_back_to_the_source_grid(patient, axcodes, tmp_path: Path) -> None:  # noqa: ANN001
    vol = open_path(write_nifti_4d(tmp_path / "p.nii.gz", patient.slices, axcodes=axcodes)).volume()
    for turn in (PlaneTurn(), PlaneTurn(1), PlaneTurn(3, True)):
        turned = reorient(vol, turn)
        point = (3, 40, 200)
        mask = np.zeros(turned.slices.shape[:3], np.uint8)
        mask[point] = 1
        on_grid = turned.mask_on_source_grid(mask)
        ijk = np.argwhere(on_grid)
        assert len(ijk) == 1  # 256² in-plane: no resize, one voxel maps to one voxel
        world = turned.grid.affine @ [*ijk[0], 1]
        assert np.allclose(display_affine(turned.grid) @ [*point, 1], world, atol=1e-6)


def test_kaggle_stand_in_affine_carries_the_directions_and_the_users_voxel_size(patient) -> None:  # noqa: ANN001
    assert patient.spacing is None and not patient.grid.affine_known
    mask = blob_mask(patient.slices.shape[:3])
    unknown = _nifti(mask_nifti(patient, fake_prediction(patient, mask)))
    assert nib.aff2axcodes(unknown.affine) == ("L", "P", "S") and np.allclose(np.abs(np.diag(unknown.affine)[:3]), 1)
    assert unknown.header.get_xyzt_units()[0] == "unknown" and b"unknown" in unknown.header["descrip"].tobytes()
    given = with_voxel_size(patient, 0.9, 3.0)
    assert given.spacing == pytest.approx((3.0, 0.9, 0.9)) and given.grid.affine_known
    assert given.voxel_ml == pytest.approx(3.0 * 0.81 / 1000)
    assert any("0.9 mm in-plane" in n for n in given.provenance.notes)
    known = _nifti(mask_nifti(given, fake_prediction(given, mask)))
    assert np.allclose(np.diag(known.affine)[:3], [-0.9, -0.9, 3.0]) and known.header.get_xyzt_units()[0] == "mm"
    assert np.array_equal(np.asarray(known.dataobj), np.asarray(unknown.dataobj))  # same voxels, new geometry
    assert with_voxel_size(patient, None, None) is patient
    with pytest.raises(VolumeError, match="both"):
        with_voxel_size(patient, 0.9, None)
    with pytest.raises(VolumeError, match="not a brain MRI voxel"):
        with_voxel_size(patient, 90.0, 3.0)


def test_voxel_size_is_refused_for_inputs_with_their_own(patient, tmp_path: Path) -> None:  # noqa: ANN001
    vol = open_path(write_nifti_4d(tmp_path / "p.nii.gz", patient.slices)).volume()
    with pytest.raises(VolumeError, match="carries its own voxel size"):
        with_voxel_size(vol, 1.0, 1.0)


def test_plane_turns_compose_and_undo() -> None:
    arr = np.arange(2 * 4 * 4).reshape(2, 4, 4)
    for turn in TURN_CHOICES.values():
        assert np.array_equal(turn.undo(turn.apply(arr)), arr)
        for other in TURN_CHOICES.values():
            assert np.array_equal(turn.then(other).apply(arr), other.apply(turn.apply(arr)))
    assert np.array_equal(PlaneTurn(1).apply(arr)[0], np.rot90(arr[0]))  # a positive quarter turn is anticlockwise


def test_a_turned_volume_maps_its_mask_back_onto_the_same_voxels(patient, tmp_path: Path) -> None:  # noqa: ANN001
    vol = with_voxel_size(patient, 0.8, 2.5)
    turn = PlaneTurn(1)
    turned = reorient(vol, turn)
    assert turned.grid.turn == turn and turned.spacing == pytest.approx(vol.spacing)  # square pixels
    assert turned.truth is not None and np.array_equal(turned.truth, turn.apply(vol.truth))
    assert any("turned in-plane by the user" in n for n in turned.provenance.notes)
    mask = blob_mask(vol.slices.shape[:3])
    assert np.array_equal(turned.mask_on_source_grid(turn.apply(mask)), vol.mask_on_source_grid(mask))
    # the file's affine says the turned rows run to the patient's right and the columns to the back; the page labels
    # the turned slices face up, as the user's turn asserts
    assert display_axcodes(turned.grid) == ("S", "R", "P")
    assert edge_letters(turned.grid) == KAGGLE_EDGES and volume_slice_label(turned.grid) == "Slice (inferior → superior)"
    assert reorient(reorient(turned, PlaneTurn(3)), PlaneTurn()).grid.turn == PlaneTurn()


def test_lie_check_finds_a_head_on_its_side_and_suggests_the_turn_back(request: pytest.FixtureRequest,
                                                                        synthetic_root: Path) -> None:
    from patient_files import real_or_phantom_root

    root = real_or_phantom_root(request, synthetic_root)
    vol = dataset_patient(root)
    upright = check_lie(vol)
    if upright.axis_ratio < 1.05:
        pytest.skip("this patient's head outline is round: its long axis cannot be judged (phantoms)")
    assert not upright.across and upright.message == "" and upright.long_axis_deg < 20
    for turn in (PlaneTurn(1), PlaneTurn(3)):
        lie = check_lie(reorient(vol, turn))
        assert lie.across and lie.long_axis_deg > 70 and "on its side" in lie.message
        assert lie.suggested.quarter_turns in (1, 3)


def test_a_turned_volume_maps_its_probability_back_like_its_mask(patient, tmp_path: Path) -> None:  # noqa: ANN001
    vol = open_path(write_nifti_4d(tmp_path / "p.nii.gz", patient.slices, axcodes=("A", "S", "L"))).volume()
    turn = PlaneTurn(3, True)
    turned = reorient(vol, turn)
    mask = blob_mask(vol.slices.shape[:3])
    probability = mask.astype(np.float32) * 0.9
    expected = vol.probability_on_source_grid(probability)
    assert np.array_equal(turned.probability_on_source_grid(turn.apply(probability)), expected)
    assert np.array_equal(turned.mask_on_source_grid(turn.apply(mask)), vol.mask_on_source_grid(mask))
