"""Damaged files, as an interrupted copy leaves them: every reader names the file in a VolumeError, and the CLI reports
it with exit 2 and still writes the other inputs (the page: tests/app/test_patient_page_studies.py)."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from patient_files import dataset_patient, dicom_series, kaggle_zip, write_nifti_4d

from lggdemo.patient.readers import open_files, open_path
from lggdemo.patient.readers.nifti import load_nifti
from lggdemo.patient.readers.safezip import read_zip
from lggdemo.patient.volume import VolumeError


@pytest.fixture(scope="module")
def patient(synthetic_root: Path):  # noqa: ANN201
    return dataset_patient(synthetic_root, 0)


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _zip(files: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n, d in files:
            zf.writestr(n, d)
    return buf.getvalue()


def _series(patient, n: int = 6) -> list[tuple[str, bytes]]:  # noqa: ANN001
    from pydicom.uid import generate_uid

    return dicom_series(patient.slices[:n, :, :, 1], "FLAIR", study_uid=generate_uid(), for_uid=generate_uid())


# --- NIfTI ----------------------------------------------------------------------------------------


def test_nifti_gz_cut_in_half_is_named(patient, tmp_path: Path) -> None:  # noqa: ANN001
    good = write_nifti_4d(tmp_path / "whole.nii.gz", patient.slices)
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(_half(good.read_bytes()))
    with pytest.raises(VolumeError, match=r"cut\.nii\.gz: the gzip stream stops before its end"):
        open_path(cut)
    with pytest.raises(VolumeError, match=r"cut\.nii\.gz: .*cut short"):  # the upload path: bytes, not a path
        open_files([("cut.nii.gz", cut.read_bytes())], "cut")


def test_nifti_cut_in_half_is_named_before_any_voxel_is_read(patient, tmp_path: Path) -> None:  # noqa: ANN001
    raw = gzip.decompress(write_nifti_4d(tmp_path / "whole.nii.gz", patient.slices).read_bytes())
    with pytest.raises(VolumeError, match=r"cut\.nii: holds \d+ bytes of voxel data but its header says \d+"):
        load_nifti(_half(raw), "cut.nii")
    with pytest.raises(VolumeError, match=r"cut\.nii: not a NIfTI"):  # cut inside the 348-byte header
        load_nifti(raw[:200], "cut.nii")


def test_corrupt_gzip_is_named() -> None:
    data = bytearray(gzip.compress(nib.Nifti1Image(np.arange(4096, dtype=np.int16).reshape(16, 16, 16),
                                                   np.eye(4)).to_bytes()))
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)  # a damaged block in the middle
    with pytest.raises(VolumeError, match=r"bad\.nii\.gz: the gzip stream is corrupt"):
        load_nifti(bytes(data), "bad.nii.gz")


# --- DICOM ----------------------------------------------------------------------------------------


def test_dicom_file_cut_in_half_is_named(patient) -> None:  # noqa: ANN001
    files = _series(patient)
    name, data = files[2]
    damaged = files[:2] + [(name, _half(data))] + files[3:]
    with pytest.raises(VolumeError, match=rf"{name}.*damaged DICOM file.*cut short"):
        open_files([("study.zip", _zip(damaged))], "study").volume()


@pytest.mark.parametrize("keep", [150, 400])  # inside the file meta; after the header, before the pixel data
def test_dicom_file_cut_early_is_named(patient, keep: int) -> None:  # noqa: ANN001
    files = _series(patient)
    name, data = files[1]
    damaged = [files[0], (name, data[:keep]), *files[2:]]
    with pytest.raises(VolumeError, match=rf"{name} is a damaged DICOM file"):
        open_files(damaged, "study")


def test_dicom_pixel_data_shorter_than_the_header_says(patient) -> None:  # noqa: ANN001
    import pydicom

    files = _series(patient)
    name, data = files[3]
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]  # a well-formed file whose pixel data is short
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    damaged = files[:3] + [(name, buf.getvalue())] + files[4:]
    with pytest.raises(VolumeError, match=rf"{name} is a damaged DICOM file: \d+ bytes of pixel data where its "
                                          r"header says \d+"):
        open_files(damaged, "study")


def test_compressed_pixel_data_cut_short_is_named(patient) -> None:  # noqa: ANN001
    """Compressed data has no length to check before decoding: the decoder's failure names the file."""
    import pydicom
    from pydicom.uid import RLELossless

    files = _series(patient, 4)
    name, data = files[0]
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.compress(RLELossless)
    frame = ds.PixelData
    ds.PixelData = frame[: len(frame) // 2] + (b"\0" if len(frame) // 2 % 2 else b"")
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    with pytest.raises(VolumeError, match=rf"the pixel data of {name} \(RLE Lossless\) cannot be decoded"):
        open_files([(name, buf.getvalue()), *files[1:]], "study").volume()


# --- Kaggle and zip -------------------------------------------------------------------------------


def test_kaggle_slice_cut_in_half_is_named(patient) -> None:  # noqa: ANN001
    with zipfile.ZipFile(io.BytesIO(kaggle_zip(patient, with_masks=False))) as zf:
        files = [(n, zf.read(n)) for n in zf.namelist()]
    name, data = files[1]
    files[1] = (name, _half(data))
    with pytest.raises(VolumeError, match=rf"{Path(name).name}.*truncated or corrupt"):
        open_files([("p.zip", _zip(files))], "p").volume()


def test_zip_cut_in_half_is_named(patient) -> None:  # noqa: ANN001
    with pytest.raises(VolumeError, match=r"p\.zip: not a readable zip"):
        read_zip(_half(kaggle_zip(patient)), "p.zip")


# --- the CLI -------------------------------------------------------------------------


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
def test_cli_reports_a_cut_file_and_writes_the_next_input(patient, tiny_weights: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    from lggdemo.predict import main

    inputs = tmp_path / "in"
    inputs.mkdir()
    good = write_nifti_4d(inputs / "good.nii.gz", patient.slices)
    cut = inputs / "cut.nii.gz"
    cut.write_bytes(_half(good.read_bytes()))
    out = tmp_path / "out"
    code = main([str(cut), str(good), "--out", str(out), "--weights", str(tiny_weights), "--device", "cpu",
                 "--no-grade"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err and f"error: {cut}: cut.nii.gz: the gzip stream stops before its end" in err
    assert sorted(p.name for p in out.iterdir()) == ["good_mask.nii.gz", "report.json"]  # nothing for the cut one
    rows = json.loads((out / "report.json").read_text())["patients"]
    assert [Path(r["input"]).name for r in rows] == ["cut.nii.gz", "good.nii.gz"]
    assert "cut short" in rows[0]["error"] and rows[1]["error"] is None


def test_cli_export_failure_is_a_message_and_exit_2(patient, tiny_weights: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    """A series highdicom cannot build a SEG from (no StudyInstanceUID, a Type 1 attribute): named, no traceback."""
    import pydicom

    from lggdemo.predict import main

    files = []
    for name, data in _series(patient):
        ds = pydicom.dcmread(io.BytesIO(data))
        del ds.StudyInstanceUID
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        files.append((name, buf.getvalue()))
    study = tmp_path / "nostudy.zip"
    study.write_bytes(_zip(files))
    out = tmp_path / "out"
    code = main([str(study), "--out", str(out), "--format", "dicom-seg", "--weights", str(tiny_weights),
                 "--device", "cpu", "--no-grade"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "the DICOM SEG cannot be made from this series" in err and "StudyInstanceUID" in err
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]
