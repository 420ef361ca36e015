"""``lggdemo-predict``: several patients in, one mask each, a report listing every input, exit 2 for bad ones."""

from __future__ import annotations

import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from patient_files import dataset_patient, dicom_study_zip, write_nifti_4d

from lggdemo.predict import main


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
def test_two_patients_and_a_bad_input(synthetic_root: Path, tiny_weights: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    patient = dataset_patient(synthetic_root, 0)
    (tmp_path / "in").mkdir()
    nifti = write_nifti_4d(tmp_path / "in" / "alpha.nii.gz", patient.slices)
    kaggle = synthetic_root / scan_ids(synthetic_root)[1]
    bad = tmp_path / "in" / "broken.zip"
    bad.write_bytes(b"not a zip at all")
    out = tmp_path / "out"
    code = main([str(nifti), str(kaggle), str(bad), "--out", str(out), "--weights", str(tiny_weights),
                 "--device", "cpu", "--age", "50", "--sex", "female", "--csv", str(out / "report.csv")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"error: {bad}" in err and "not a readable zip" in err and "2 of 3 input(s) predicted" in err
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["alpha_mask.nii.gz", f"{kaggle.name}_mask.nii.gz", "report.json", "report.csv"])
    doc = json.loads((out / "report.json").read_text())
    rows = {Path(r["input"]).name: r for r in doc["patients"]}
    assert list(rows) == ["alpha.nii.gz", kaggle.name, "broken.zip"]
    assert isinstance(rows["alpha.nii.gz"]["tumour_ml"], float)
    assert rows[kaggle.name]["tumour_ml"] is None and rows[kaggle.name]["dice"] is not None  # masks came with it
    assert rows["broken.zip"]["error"] and rows["broken.zip"]["tumour_voxels"] is None
    assert 0.0 <= rows["alpha.nii.gz"]["raw_score"] <= 1.0 and rows["alpha.nii.gz"]["model_version"] == "tiny-test-1"
    # the tiny card's grade AUC interval reaches 0.5: no P(G3), the reason in the row and on stderr
    assert rows["alpha.nii.gz"]["p_g3"] is None and "no better than chance" in rows["alpha.nii.gz"]["grade_note"]
    assert "note: On patients it had not seen" in err
    mask = nib.load(str(out / "alpha_mask.nii.gz"))
    assert mask.shape == nib.load(str(nifti)).shape[:3]
    assert int(mask.get_fdata().sum()) == rows["alpha.nii.gz"]["tumour_voxels"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]  # nothing written elsewhere


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
def test_dicom_seg_format_and_refusal_for_other_inputs(synthetic_root: Path, tiny_weights: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import highdicom as hd

    patient = dataset_patient(synthetic_root, 2)
    study = tmp_path / "study.zip"
    study.write_bytes(dicom_study_zip(patient.slices))
    kaggle = synthetic_root / scan_ids(synthetic_root)[2]
    out = tmp_path / "out"
    code = main([str(study), str(kaggle), "--out", str(out), "--format", "dicom-seg", "--weights", str(tiny_weights),
                 "--device", "cpu", "--no-grade"])
    assert code == 2 and "a DICOM SEG needs DICOM input" in capsys.readouterr().err
    seg = hd.seg.segread(io.BytesIO((out / "study_seg.dcm").read_bytes()))
    assert seg.Modality == "SEG"
    rows = json.loads((out / "report.json").read_text())["patients"]
    assert rows[0]["p_g3"] is None and rows[0]["grade_note"].startswith("Grade not computed")


def scan_ids(root: Path) -> list[str]:
    from lggdemo.data.kaggle import scan_dataset

    return scan_dataset(root).patient_ids


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
def test_probability_map_and_pdf_formats(synthetic_root: Path, tiny_weights: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from pypdf import PdfReader

    patient = dataset_patient(synthetic_root, 4)
    nifti = write_nifti_4d(tmp_path / "beta.nii.gz", patient.slices)
    out = tmp_path / "out"
    assert main([str(nifti), "--out", str(out), "--weights", str(tiny_weights), "--device", "cpu", "--no-grade",
                 "--format", "nifti,prob-nifti,pdf"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["beta_mask.nii.gz", "beta_prob.nii.gz", "beta_report.pdf",
                                                     "report.json"]
    prob = nib.load(str(out / "beta_prob.nii.gz"))
    assert prob.shape == nib.load(str(nifti)).shape[:3] and prob.get_data_dtype() == np.float32
    row = json.loads((out / "report.json").read_text())["patients"][0]
    assert row["mask_file"] == "beta_mask.nii.gz" and row["mask"] == "model" and row["spacing_mm"] is not None
    text = PdfReader(str(out / "beta_report.pdf")).pages[0].extract_text()
    assert "beta" in text and (f"{row['tumour_ml']:.3f} mL" in text)
    with pytest.raises(SystemExit):
        main([str(nifti), "--out", str(out), "--format", "nifti,jpeg"])
    assert "formats are nifti" in capsys.readouterr().err


def test_no_weights_where_the_default_points_says_to_pass_them(synthetic_root: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """An installed copy ships no weights: without --weights the error names the option; with it, it does not."""
    import lggdemo.predict as cli

    monkeypatch.setattr(cli, "active_dir", lambda: tmp_path / "site-packages" / "weights")
    kaggle = synthetic_root / scan_ids(synthetic_root)[0]
    assert main([str(kaggle), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "Missing weights file" in err and "pass --weights DIR" in err
    assert main([str(kaggle), "--out", str(tmp_path / "out"), "--weights", str(tmp_path / "none")]) == 1
    assert "pass --weights DIR" not in capsys.readouterr().err
