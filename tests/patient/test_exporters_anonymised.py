"""Anonymised studies: Type 2 attributes dropped or blanked never break the DICOM SEG, and the source stays as it was."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from patient_files import blob_mask, dataset_patient, dicom_study_zip, fake_prediction

from lggdemo.patient.exporters import SEG_TYPE2_FROM_SOURCE, mask_dicom_seg
from lggdemo.patient.readers import open_files

DROPPED = ("PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "ReferringPhysicianName", "StudyDate",
           "StudyTime")


@pytest.fixture(scope="module")
def patient(synthetic_root: Path):  # noqa: ANN201
    return dataset_patient(synthetic_root, 1)


def anonymised_zip(study: bytes, drop: tuple[str, ...] = DROPPED, blank: tuple[str, ...] = (),
                   **values: str) -> bytes:
    """The study with ``drop`` removed, ``blank`` set empty and ``values`` set, in every instance."""
    import pydicom

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(study)) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name.endswith(".dcm"):
                ds = pydicom.dcmread(io.BytesIO(data))
                for keyword in drop:
                    delattr(ds, keyword)
                for keyword in blank:
                    setattr(ds, keyword, "")
                for keyword, value in values.items():
                    setattr(ds, keyword, value)
                buf = io.BytesIO()
                ds.save_as(buf, enforce_file_format=True)
                data = buf.getvalue()
            dst.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize("how", ["dropped", "blank", "odd sex"])
def test_seg_of_an_anonymised_study(patient, how: str) -> None:  # noqa: ANN001
    import highdicom as hd

    study = dicom_study_zip(patient.slices, three=False)
    data = {"dropped": lambda: anonymised_zip(study),
            "blank": lambda: anonymised_zip(study, drop=(), blank=DROPPED + ("PatientName", "PatientID")),
            "odd sex": lambda: anonymised_zip(study, drop=("PatientBirthDate",), PatientSex="U")}[how]()
    vol = open_files([("anon.zip", data)], "anon").volume()
    sources = vol.extra["dicom_sources"]
    before = [sorted(e.keyword for e in ds) for ds in sources]
    mask = blob_mask(vol.slices.shape[:3])
    seg = hd.seg.segread(io.BytesIO(mask_dicom_seg(vol, fake_prediction(vol, mask))))
    for keyword in SEG_TYPE2_FROM_SOURCE:  # present in the SEG, as Type 2 asks
        assert keyword in seg, keyword
    if how == "dropped":
        assert all(str(seg.get(k) or "") == "" for k in DROPPED)
        assert seg.PatientID == "LGGTEST1"  # what the source has is copied
    if how == "odd sex":
        assert seg.PatientSex == "" and sources[0].PatientSex == "U"
    assert [sorted(e.keyword for e in ds) for ds in sources] == before  # the source is untouched
    assert all("PatientBirthDate" not in ds for ds in sources) or how == "blank"
    assert all("PixelData" in ds for ds in sources)
    uids = [ds.SOPInstanceUID for ds in sources]
    frames = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1])[..., 0]
    assert np.array_equal(frames.astype(bool), mask.astype(bool))  # both inferior to superior


def test_cli_writes_the_seg_of_a_study_without_birth_date(patient, tiny_weights: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    import highdicom as hd

    from lggdemo.predict import main

    study = tmp_path / "anon.zip"
    study.write_bytes(anonymised_zip(dicom_study_zip(patient.slices)))
    out = tmp_path / "out"
    code = main([str(study), "--out", str(out), "--format", "dicom-seg", "--weights", str(tiny_weights),
                 "--device", "cpu", "--no-grade"])
    err = capsys.readouterr().err
    assert code == 0, err
    seg = hd.seg.segread(io.BytesIO((out / "anon_seg.dcm").read_bytes()))
    assert seg.PatientBirthDate in ("", None) and seg.Modality == "SEG"
    assert json.loads((out / "report.json").read_text())["patients"][0]["error"] is None
