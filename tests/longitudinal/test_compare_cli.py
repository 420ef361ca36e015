"""``lggdemo-compare``: a DICOM baseline and an anonymised DICOM follow-up (Type 2 attributes dropped, StudyDate
among them) in, the table, the NIfTI files and the PDF out, all saying the same numbers; a refused pair exits 2."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from longitudinal_heads import head_volume
from patient_files import SPACING, dicom_study_zip, kaggle_zip

from lggdemo.compare import main
from lggdemo.longitudinal.outputs import FILES
from lggdemo.longitudinal.synthetic import make_follow_up

TYPE2 = ("PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "ReferringPhysicianName", "StudyDate",
         "StudyTime")


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("studies")
    head = head_volume(name="head")
    fu = make_follow_up(head, rotation_deg=(3.0, 0.0, 5.0), translation_mm=(2.0, -3.0, 0.0), growth=1.3)
    baseline = folder / "baseline.zip"
    baseline.write_bytes(dicom_study_zip(head.slices, three=False))
    followup = folder / "followup.zip"
    followup.write_bytes(dicom_study_zip(fu.volume.slices, three=False, drop=TYPE2))
    return baseline, followup


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
def test_compare_writes_every_file_and_they_agree(studies: tuple[Path, Path], tiny_weights: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main([str(studies[0]), str(studies[1]), "--out", str(out), "--weights", str(tiny_weights),
                 "--followup-date", "2021-01-01"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    doc = json.loads((out / "comparison.json").read_text())
    change = doc["change"]
    assert change["baseline"]["date"] == "2020-01-01" and change["baseline"]["date_source"] == "DICOM StudyDate"
    assert change["followup"]["date"] == "2021-01-01" and change["followup"]["date_source"] == "entered"
    assert change["interval_days"] == 366 and change["volume_unit"] == "mL"  # DICOM carries the spacing
    assert doc["registration"]["verdict"] in ("good", "doubtful")
    rows = list(csv.DictReader(io.StringIO((out / "change.csv").read_text())))
    assert rows[0]["measure"].startswith("Volume") and rows[3]["change"] == (change["rano_lgg"]["category"] or
                                                                              "cannot be told")
    from pypdf import PdfReader

    text = " ".join(p.extract_text() for p in PdfReader(out / "comparison.pdf").pages).replace("\n", " ")
    assert len(PdfReader(out / "comparison.pdf").pages) == 1
    for row in rows:
        assert row["change"] in text, row
    assert "imaging criterion only" in text and "not a medical device" in text.lower()
    baseline_grid = nib.load(str(out / "baseline_mask.nii.gz"))
    for name in ("followup_mask.nii.gz", "followup_registered.nii.gz"):
        img = nib.Nifti1Image.from_bytes(gzip.decompress((out / name).read_bytes()))
        assert img.shape == baseline_grid.shape and np.allclose(img.affine, baseline_grid.affine)
    assert np.allclose(np.abs(np.diag(baseline_grid.affine)[:3]), [SPACING[2], SPACING[1], SPACING[0]])


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
def test_two_different_studies_are_refused(tiny_weights: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    head = head_volume(name="head")
    rng = np.random.default_rng(0)
    junk = head_volume(seed=9, name="junk")
    noise = np.where(junk.slices > 0, rng.integers(0, 255, junk.slices.shape, dtype=np.uint8), 0).astype(np.uint8)
    from dataclasses import replace

    (tmp_path / "a.zip").write_bytes(kaggle_zip(head, with_masks=False))
    (tmp_path / "b.zip").write_bytes(kaggle_zip(replace(junk, slices=noise, name="junk"), with_masks=False))
    code = main([str(tmp_path / "a.zip"), str(tmp_path / "b.zip"), "--out", str(tmp_path / "out"),
                 "--weights", str(tiny_weights)])
    err = capsys.readouterr().err
    assert code == 2 and "not compared" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
