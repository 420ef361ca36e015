"""Age and sex belong to the input they were entered for (issue: an example's 43 years stuck to the next upload).

Under AppTest on the phantoms: an example followed by an upload, in either mode; values typed before any upload;
switching modes and back; and the report's record of which values were used and whether each was given.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from patient_files import dataset_patient, write_nifti_three
from streamlit.testing.v1 import AppTest

from lggdemo.data.kaggle import scan_dataset
from lggdemo.ui.predict.clinical import CLEARED_NOTE, FROM_RECORD, TYPED


def texts(at: AppTest) -> str:
    kinds = ("error", "warning", "info", "markdown", "caption", "success")
    return "\n".join(str(e.value) for kind in kinds for e in getattr(at, kind))


def age(at: AppTest) -> float | None:
    return at.number_input(key="predict_age").value


def sex(at: AppTest) -> str:
    return at.radio(key="predict_sex").value


def submit(at: AppTest) -> AppTest:
    next(b for b in at.get("form_submit_button") if "Apply" in b.label).click().run()
    assert not at.exception, at.exception
    return at


def _nifti_files(root: Path, tmp_path: Path, which: int = 1) -> list[tuple[str, bytes, str]]:
    paths = write_nifti_three(tmp_path / "nii", dataset_patient(root, which).slices)
    return [(p.name, p.read_bytes(), "application/gzip") for p in paths.values()]


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
def test_whole_patient_upload_after_an_example_starts_empty(predict_app: AppTest, synthetic_root: Path,
                                                             tmp_path: Path) -> None:
    at = predict_app
    at.radio(key="predict_input_mode").set_value("Whole patient").run()
    at.button(key="patient_example").click().run()
    assert not at.exception, at.exception
    record = scan_dataset(synthetic_root).clinical_for(scan_dataset(synthetic_root).patient_ids[0])
    assert record.age is not None and age(at) == record.age and sex(at) == (record.sex or "unknown")
    assert "Age not given" not in texts(at)

    at.file_uploader(key="patient_files").set_value(_nifti_files(synthetic_root, tmp_path)).run()
    assert not at.exception, at.exception
    assert age(at) is None and sex(at) == "unknown"
    assert "Age not given" in texts(at) and "Sex not given" in texts(at) and CLEARED_NOTE in texts(at)
    assert at.session_state["predict_clinical_source"] is None


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
def test_values_typed_before_an_upload_are_that_uploads(predict_app: AppTest, synthetic_root: Path,
                                                         tmp_path: Path) -> None:
    at = predict_app
    at.radio(key="predict_input_mode").set_value("Whole patient").run()
    at.number_input(key="predict_age").set_value(31.0)
    at.radio(key="predict_sex").set_value("female")
    submit(at)
    at.file_uploader(key="patient_files").set_value(_nifti_files(synthetic_root, tmp_path)).run()
    assert not at.exception, at.exception
    assert age(at) == 31.0 and sex(at) == "female" and "Age not given" not in texts(at)
    assert at.session_state["predict_clinical_source"] == TYPED


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
def test_each_mode_keeps_its_own_inputs_values(predict_app: AppTest, synthetic_root: Path) -> None:
    at = predict_app
    at.button(key="predict_example").click().run()  # slice mode: an example with its record
    index = scan_dataset(synthetic_root)
    record = index.clinical_for(index.patient_ids[0])
    assert age(at) == record.age and at.session_state["predict_clinical_source"] == FROM_RECORD

    at.radio(key="predict_input_mode").set_value("Whole patient").run()  # nothing loaded there
    assert not at.exception, at.exception
    assert age(at) is None and sex(at) == "unknown"
    at.button(key="patient_example").click().run()
    at.number_input(key="predict_age").set_value(70.0)
    submit(at)
    assert age(at) == 70.0 and at.session_state["predict_clinical_source"] == TYPED

    at.radio(key="predict_input_mode").set_value("Slices").run()  # back: the slice example's own values
    assert not at.exception, at.exception
    assert age(at) == record.age and at.session_state["predict_clinical_source"] == FROM_RECORD
    at.radio(key="predict_input_mode").set_value("Whole patient").run()
    assert age(at) == 70.0


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
def test_the_report_records_the_values_used_and_whether_given(predict_app: AppTest, synthetic_root: Path,
                                                              tmp_path: Path) -> None:
    at = predict_app
    at.radio(key="predict_input_mode").set_value("Whole patient").run()
    at.button(key="patient_example").click().run()
    at.file_uploader(key="patient_files").set_value(_nifti_files(synthetic_root, tmp_path)).run()
    assert not at.exception, at.exception
    row = json.loads(report_json(at))["patients"][0]
    assert row["age"] is None and row["age_given"] is False and row["sex_given"] is False
    assert row["clinical_source"] is None

    at.number_input(key="predict_age").set_value(31.0)
    at.radio(key="predict_sex").set_value("female")
    submit(at)
    row = json.loads(report_json(at))["patients"][0]
    assert (row["age"], row["sex"], row["age_given"], row["sex_given"]) == (31.0, "female", True, True)
    assert row["clinical_source"] == TYPED


def report_json(at: AppTest) -> bytes:
    """The whole-patient JSON report of the model's mask, as the page offers it (its held downloads)."""
    held = at.session_state["patient_downloads"]
    files = [f for (_key, kind, _digest, _source), (fs, _failed) in held.items() if kind == "model" for f in fs]
    found = [f.data for f in files if f.label == "Download report (JSON)"]
    assert found, [f.label for f in files]
    return found[-1]
