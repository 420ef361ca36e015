"""Outputs checked against a mask known exactly: NIfTI on the input's grid, DICOM SEG read back by highdicom,
the PNG stack, the reports, and writes that stay inside the output folder."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from patient_files import blob_mask, dataset_patient, dicom_study_zip, fake_prediction, write_nifti_4d, write_nifti_three

from lggdemo.data.imageio import decode_mask
from lggdemo.inference.reports import patient_report_csv, patient_report_json, patient_row
from lggdemo.patient.exporters import (
    SEGMENT_LABEL,
    ExportError,
    mask_bytes,
    mask_dicom_seg,
    mask_nifti,
    mask_png_zip,
    write_inside,
)
from lggdemo.patient.readers import open_files, open_path
from lggdemo.patient.volume import VolumeError


@pytest.fixture(scope="module")
def patient(synthetic_root: Path):  # noqa: ANN201
    return dataset_patient(synthetic_root)


def _load(data: bytes) -> nib.Nifti1Image:
    return nib.Nifti1Image.from_bytes(__import__("gzip").decompress(data))


@pytest.mark.parametrize("axcodes", [("L", "P", "S"), ("A", "S", "L")])
def test_nifti_mask_has_the_inputs_shape_and_affine(patient, tmp_path: Path, axcodes) -> None:  # noqa: ANN001
    src_path = write_nifti_4d(tmp_path / "p.nii.gz", patient.slices, axcodes=axcodes)
    vol = open_path(src_path).volume()
    mask = blob_mask(vol.slices.shape[:3])
    out = _load(mask_nifti(vol, fake_prediction(vol, mask)))
    src = nib.load(str(src_path))
    assert out.shape == src.shape[:3]
    assert np.array_equal(out.affine, src.affine)  # exactly
    # the written mask, read as a one-sequence volume on the same grid, is the display mask again
    again = open_files([("m.nii", out.to_bytes())], "m").volume()
    assert np.array_equal(again.slices[..., 1] > 0, mask.astype(bool))


def test_nifti_mask_for_three_files_and_for_kaggle(patient, tmp_path: Path) -> None:  # noqa: ANN001
    paths = write_nifti_three(tmp_path / "three", patient.slices)
    vol = open_path(tmp_path / "three").volume()
    mask = blob_mask(vol.slices.shape[:3])
    out = _load(mask_nifti(vol, fake_prediction(vol, mask)))
    flair = nib.load(str(paths["flair"]))
    assert out.shape == flair.shape and np.array_equal(out.affine, flair.affine)
    kaggle = _load(mask_nifti(patient, fake_prediction(patient, mask)))
    # (columns, rows, slices) under the layout's true directions: columns R->L, rows A->P, slices I->S; 1 mm unknown
    assert kaggle.shape == (256, 256, patient.n_slices) and nib.aff2axcodes(kaggle.affine) == ("L", "P", "S")
    assert not np.array_equal(kaggle.affine, np.eye(4)) and kaggle.header.get_xyzt_units()[0] == "unknown"
    assert np.array_equal(np.transpose(np.asarray(kaggle.dataobj), (2, 1, 0)), mask)
    assert int(np.asarray(kaggle.dataobj).sum()) == int(mask.sum())


def test_dicom_seg_references_the_series_and_its_frames_equal_the_mask(patient) -> None:  # noqa: ANN001
    import highdicom as hd

    vol = open_files([("study.zip", dicom_study_zip(patient.slices))], "study").volume()
    mask = blob_mask(vol.slices.shape[:3])
    seg = hd.seg.segread(io.BytesIO(mask_dicom_seg(vol, fake_prediction(vol, mask))))
    sources = vol.extra["dicom_sources"]
    assert seg.get_segment_description(1).segment_label == SEGMENT_LABEL
    algo = seg.get_segment_description(1).algorithm_identification[0]
    assert algo.AlgorithmVersion == "test-version"
    flair_uid = vol.provenance.series_uids[1]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == flair_uid
    uids = [ds.SOPInstanceUID for ds in sources]  # inferior to superior
    frames = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1])[..., 0]
    assert frames.shape == (vol.n_slices, 256, 256)
    assert np.array_equal(frames.astype(bool), mask.astype(bool))  # the display order is inferior to superior too
    nii = _load(mask_nifti(vol, fake_prediction(vol, mask)))  # the NIfTI of a DICOM input: (columns, rows, slices)
    assert nii.shape == (256, 256, vol.n_slices) and np.allclose(np.diag(nii.affine)[:3], [-0.75, -0.8, 3.0])
    assert np.array_equal(np.transpose(np.asarray(nii.dataobj), (2, 1, 0)), mask)
    with pytest.raises(ExportError, match="needs DICOM input"):
        mask_dicom_seg(patient, fake_prediction(patient, mask))


def test_png_zip_uses_the_kaggle_names(patient) -> None:  # noqa: ANN001
    mask = blob_mask(patient.slices.shape[:3])
    with zipfile.ZipFile(io.BytesIO(mask_png_zip(patient, fake_prediction(patient, mask)))) as zf:
        names = zf.namelist()
        assert names[0] == f"{patient.name}/{patient.name}_1_mask.png" and len(names) == patient.n_slices
        k = int(np.argmax(mask.reshape(len(mask), -1).sum(1)))
        assert np.array_equal(decode_mask(zf.read(names[k])).array, mask[k])


def test_reports_carry_volume_grade_caveat_and_errors(patient, tmp_path: Path) -> None:  # noqa: ANN001
    vol = open_path(write_nifti_4d(tmp_path / "p.nii.gz", patient.slices)).volume()
    mask = blob_mask(vol.slices.shape[:3])
    rows = [patient_row(vol, fake_prediction(vol, mask)), patient_row(patient, fake_prediction(patient, mask)),
            patient_row(None, None, name="bad.zip", error="broken")]
    doc = json.loads(patient_report_json(rows))
    first, kaggle, bad = doc["patients"]
    assert first["tumour_voxels"] == int(mask.sum())
    assert first["tumour_ml"] == pytest.approx(mask.sum() * np.prod(vol.spacing) / 1000, abs=1e-3)
    assert kaggle["tumour_ml"] is None and kaggle["spacing_mm"] is None
    assert bad["error"] == "broken" and bad["tumour_voxels"] is None
    assert first["p_g3"] == 0.3 and "not a calibrated probability" in doc["grade_caveat"]
    assert first["model_version"] == "test-version" and first["device"] == "cpu"
    csv = patient_report_csv(rows).decode().splitlines()
    assert csv[0].startswith("input,kind,slices") and len(csv) == 4 and csv[3].endswith("broken")


def test_writes_stay_inside_the_output_folder(patient, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(VolumeError, match="outside"):
        write_inside(out, "../escape.txt", b"x")
    assert not (tmp_path / "escape.txt").exists()
    evil = type(patient)(patient.slices, None, patient.grid, patient.provenance, "../../evil name")
    name, data = mask_bytes("png", evil, fake_prediction(evil, blob_mask(patient.slices.shape[:3])))
    assert name == "evil_name_masks.zip"
    path = write_inside(out, name, data)
    assert path.parent == out.resolve() and sorted(p.name for p in out.iterdir()) == [name]
