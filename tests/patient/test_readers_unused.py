"""Nothing ignored in silence: every uploaded file is used or named with the reason, and outputs are named after
the study (its folder, the stem its files share, the DICOM PatientID), never a generic "patient"."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from patient_files import dataset_patient, dicom_series, kaggle_zip, write_nifti_4d, write_nifti_three

from lggdemo.patient.readers import open_files, study_name
from lggdemo.patient.volume import VolumeError


@pytest.fixture(scope="module")
def patient(synthetic_root: Path):  # noqa: ANN201
    return dataset_patient(synthetic_root)


def _reasons(unused: list) -> dict[str, str]:  # noqa: ANN001
    return {u.name: u.reason for u in unused}


def test_a_zip_beside_nifti_files_is_named(patient, tmp_path: Path) -> None:  # noqa: ANN001
    paths = write_nifti_three(tmp_path / "three", patient.slices)
    files = [(p.name.replace("patient_", "case07_"), p.read_bytes()) for p in paths.values()]
    source = open_files([*files, ("other_patient.zip", kaggle_zip(patient))])
    assert source.kind == "nifti" and source.name == "case07"  # the files' shared stem (case07_flair, ...)
    reasons = _reasons(source.unused())
    assert list(reasons) == ["other_patient.zip"] and "zip beside other files" in reasons["other_patient.zip"]
    vol = source.volume()
    assert vol.name == "case07" and np.array_equal(vol.slices, patient.slices)


def test_a_three_channel_file_beside_per_sequence_files_is_named(patient, tmp_path: Path) -> None:  # noqa: ANN001
    paths = write_nifti_three(tmp_path / "three", patient.slices)
    four = write_nifti_4d(tmp_path / "all_channels.nii.gz", patient.slices)
    files = [(p.name, p.read_bytes()) for p in paths.values()] + [(four.name, four.read_bytes())]
    source = open_files(files)
    assert "all_channels.nii.gz" not in source.options
    reasons = _reasons(source.unused())
    assert "3-channel" in reasons["all_channels.nii.gz"] and "alone" in reasons["all_channels.nii.gz"]
    # a file the user gives no role is named too, with the assignment the page shows
    flair = source.options.index("patient_flair.nii.gz")
    reasons = _reasons(source.unused({"FLAIR": flair, "pre-contrast": None, "post-contrast": None,
                                      "ground-truth mask": None}))
    assert {"patient_t1.nii.gz", "patient_t1ce.nii.gz"} <= set(reasons)
    assert "no role" in reasons["patient_t1.nii.gz"]


def test_stray_files_among_slices_and_masks_without_their_slice(patient) -> None:  # noqa: ANN001
    with zipfile.ZipFile(io.BytesIO(kaggle_zip(patient))) as zf:
        members = [(n, zf.read(n)) for n in zf.namelist()]
    pid = patient.name
    members += [(f"{pid}/notes.txt", b"hello"), (f"{pid}/{pid}_999_mask.png", members[1][1])]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n, d in members:
            zf.writestr(n, d)
        zf.writestr("__MACOSX/._x", b"meta")
    source = open_files([("upload.zip", buf.getvalue())])
    assert source.kind == "kaggle" and source.name == "upload"
    reasons = _reasons(source.unused())
    assert "not a slice image" in reasons[f"{pid}/notes.txt"]
    assert "without its slice" in reasons[f"{pid}/{pid}_999_mask.png"]
    assert "macOS" in reasons["__MACOSX/._x"]
    assert source.volume().n_slices == patient.n_slices


def test_loose_dicom_files_are_named_after_the_patient_id_and_unread_files_are_named(patient) -> None:  # noqa: ANN001
    from pydicom.uid import generate_uid

    files = dicom_series(patient.slices[..., 1], "FLAIR", study_uid=generate_uid(), for_uid=generate_uid())
    files = [(n.split("/")[-1], d) for n, d in files] + [("readme.txt", b"not dicom")]
    source = open_files(files)
    assert source.kind == "dicom" and source.name == "LGGTEST1"
    assert _reasons(source.unused()) == {"readme.txt": "not a DICOM file"}
    assert source.volume().name == "LGGTEST1"


def test_several_zips_read_the_first_and_name_the_rest(patient) -> None:  # noqa: ANN001
    data = kaggle_zip(patient)
    source = open_files([("a.zip", data), ("b.zip", data)])
    assert source.name == "a" and "only a.zip was read" in _reasons(source.unused())["b.zip"]


@pytest.mark.parametrize(("names", "expected"), [
    (["TCGA_CS_4941_flair.nii.gz", "TCGA_CS_4941_t1.nii.gz", "TCGA_CS_4941_t1ce.nii.gz"], "TCGA_CS_4941"),
    (["TCGA_X_1.tif", "TCGA_X_1_mask.tif", "TCGA_X_10.tif", "TCGA_X_2.tif"], "TCGA_X"),
    (["P7/a.dcm", "P7/sub/b.dcm"], "P7"),
    (["brain.nii.gz"], "brain"),
    (["flair.nii.gz", "t1.nii.gz"], "flair+t1"),
])
def test_study_names(names: list[str], expected: str) -> None:
    assert study_name(names) == expected


def test_nothing_readable_is_still_refused() -> None:
    with pytest.raises(VolumeError, match="not a patient this app can read"):
        open_files([("notes.txt", b"x"), ("more.txt", b"y")])
