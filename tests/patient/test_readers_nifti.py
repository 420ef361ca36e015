"""NIfTI patients written by the test (one 4D file, three files + mask) read back exactly; every refusal is clear."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from patient_files import SPACING, dataset_patient, real_or_phantom_root, write_nifti_4d, write_nifti_three

from lggdemo.patient.readers import MASK_ROLE, open_files, open_path
from lggdemo.patient.readers.nifti import guess_roles, load_nifti, nifti_volume
from lggdemo.patient.volume import VolumeError


@pytest.fixture(scope="module")
def patient(request: pytest.FixtureRequest, synthetic_root: Path):  # noqa: ANN201
    """A real patient when ../shared has them, else a phantom."""
    return dataset_patient(real_or_phantom_root(request, synthetic_root))


@pytest.mark.parametrize("axcodes", [("L", "P", "S"), ("R", "A", "S"), ("L", "A", "I")])
def test_one_4d_file_reads_back_exactly(patient, tmp_path: Path, axcodes: tuple[str, str, str]) -> None:  # noqa: ANN001
    path = write_nifti_4d(tmp_path / "p.nii.gz", patient.slices, axcodes=axcodes)
    vol = open_path(path).volume()
    assert vol.name == "p" and vol.provenance.kind == "nifti"
    assert np.array_equal(vol.slices, patient.slices)
    assert vol.spacing == pytest.approx(SPACING, abs=1e-6)
    assert vol.voxel_ml == pytest.approx(np.prod(SPACING) / 1000)
    # the way back: same shape and affine as the input file, voxels in the file's own order
    src = nib.load(str(path))
    back = vol.mask_on_source_grid(patient.truth)
    assert back.shape == src.shape[:3]
    assert back.dtype == np.uint8 and back.sum() == patient.truth.sum()
    # read as an image on the input's grid, the mask lands exactly on the truth slices
    again = nifti_volume([load_nifti(nib.Nifti1Image(back, src.affine).to_bytes(), "m.nii")], {"FLAIR": 0})
    assert np.array_equal(again.slices[..., 1] > 0, patient.truth)


def test_three_files_and_a_mask_with_guessed_roles(patient, tmp_path: Path) -> None:  # noqa: ANN001
    paths = write_nifti_three(tmp_path / "three", patient.slices, patient.truth)
    files = [(p.name, p.read_bytes()) for p in paths.values()]
    source = open_files(files, "three")
    assert source.kind == "nifti" and source.needs_assignment
    names = list(source.options)
    assert source.guess == {"pre-contrast": names.index("patient_t1.nii.gz"), "FLAIR": names.index("patient_flair.nii.gz"),
                            "post-contrast": names.index("patient_t1ce.nii.gz"), MASK_ROLE: names.index("patient_mask.nii.gz")}
    vol = source.volume()
    assert np.array_equal(vol.slices, patient.slices)
    assert np.array_equal(vol.truth, patient.truth)
    assert vol.spacing == pytest.approx(SPACING, abs=1e-6)


def test_missing_sequences_are_filled_with_flair(patient, tmp_path: Path) -> None:  # noqa: ANN001
    paths = write_nifti_three(tmp_path / "three", patient.slices)
    vol = open_path(paths["flair"]).volume()  # a lone 3D file is FLAIR
    for c in range(3):
        assert np.array_equal(vol.slices[..., c], patient.slices[..., 1])
    assert sum("filled with FLAIR" in n for n in vol.provenance.notes) == 2


def test_float_intensities_are_windowed_by_percentiles(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(500, 100, (40, 48, 12)).astype(np.float32)
    data[:5] = 0  # background
    vol = nifti_volume([load_nifti(nib.Nifti1Image(data, np.diag([1.0, 1.0, 4.0, 1.0])).to_bytes(), "f.nii")])
    assert vol.slices.dtype == np.uint8 and vol.slices.max() >= 250 and vol.slices.min() == 0
    assert any("percentiles" in n for n in vol.provenance.notes)
    assert any("aspect ratio not kept" in n for n in vol.provenance.notes)  # 40 x 48 -> 256 x 256
    assert vol.spacing == pytest.approx((4.0, 48 / 256, 40 / 256))


def test_sagittal_acquisition_is_reformatted_with_a_note(patient, tmp_path: Path) -> None:  # noqa: ANN001
    path = write_nifti_4d(tmp_path / "sag.nii", patient.slices, axcodes=("A", "S", "L"))  # third axis left-right
    vol = open_path(path).volume()
    assert np.array_equal(vol.slices, patient.slices)
    assert any("non-axial" in n for n in vol.provenance.notes)


def _nii(data: np.ndarray, affine: np.ndarray | None = None) -> bytes:
    return nib.Nifti1Image(data, np.eye(4) if affine is None else affine).to_bytes()


@pytest.mark.parametrize("shape, message", [
    ((64, 64), "2D image"), ((64, 64, 1), "2D image"), ((8, 8, 8, 5), "time series"),
])
def test_bad_shapes_are_refused(shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(VolumeError, match=message):
        load_nifti(_nii(np.zeros(shape, np.int16)), "bad.nii")


def test_sequences_on_other_grids_are_resampled_and_disjoint_ones_refused() -> None:
    """Issue 22: another shape or affine is resampled onto FLAIR (geometry checked in test_readers_geometry.py);
    only sequences that do not overlap FLAIR in space are refused."""
    a = load_nifti(_nii(np.zeros((8, 8, 4), np.int16)), "flair.nii")
    b = load_nifti(_nii(np.ones((8, 8, 5), np.int16)), "t1.nii")
    vol = nifti_volume([a, b], {"FLAIR": 0, "pre-contrast": 1})
    assert any(n.startswith("t1.nii (pre-contrast) was on its own grid (8×8×5 at 1.00×1.00×1.00 mm)") and
               "onto FLAIR's (8×8×4 at 1.00×1.00×1.00 mm)" in n for n in vol.provenance.notes)
    shifted = np.eye(4)
    shifted[0, 3] = 12.0
    c = load_nifti(_nii(np.zeros((8, 8, 4), np.int16), shifted), "t1.nii")
    with pytest.raises(VolumeError, match=r"t1\.nii \(pre-contrast\).*do not overlap in space"):
        nifti_volume([a, c], {"FLAIR": 0, "pre-contrast": 1})
    with pytest.raises(VolumeError, match="FLAIR"):
        nifti_volume([a, c], {"FLAIR": None, "pre-contrast": 1})


def test_too_many_slices_and_gzip_bomb_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(VolumeError, match="more than 512"):
        nifti_volume([load_nifti(_nii(np.zeros((4, 4, 513), np.uint8)), "tall.nii")])
    monkeypatch.setattr("lggdemo.patient.readers.nifti.MAX_VOXEL_BYTES", 2**20)  # the cap, scaled down for speed
    bomb = gzip.compress(b"\0" * (8 * 2**20), compresslevel=9)  # 8 KB that inflates past the cap
    with pytest.raises(VolumeError, match="decompresses to more than"):
        load_nifti(bomb, "bomb.nii.gz")
    with pytest.raises(VolumeError, match="not a NIfTI"):
        load_nifti(b"hello" * 100, "text.nii")


def test_guess_roles_from_names() -> None:
    g = guess_roles(["x_T1.nii.gz", "x_FLAIR.nii.gz", "x_t1ce.nii.gz"])
    assert g == {"pre-contrast": 0, "FLAIR": 1, "post-contrast": 2, MASK_ROLE: None}
    assert guess_roles(["scan.nii"])["FLAIR"] == 0
