"""Age and sex belong to their input, in a real Chromium: after "Try an example patient", an upload of another
patient's NIfTI files starts with empty clinical fields (the example's age is not carried over) and says so."""

from __future__ import annotations

import re
from pathlib import Path

from browser_steps import open_whole_patient
from patient_files import dataset_patient, write_nifti_three

from lggdemo.data.kaggle import scan_dataset
from lggdemo.inference.examples import example_patients
from lggdemo.models import weights


def test_an_example_then_an_upload_does_not_carry_the_examples_age(start_app, page, tiny_weights, synthetic_root: Path,
                                                                  tmp_path: Path) -> None:
    if not weights.is_complete(weights.BUNDLED_DIR):
        weights.set_active(tiny_weights)
    index = scan_dataset(synthetic_root)
    first = example_patients(index, weights.read_card(weights.active_dir()))[0]
    age = index.clinical_for(first).age
    assert age is not None
    page.goto(start_app() + "/predict")
    open_whole_patient(page)
    page.get_by_role("button", name="Try an example patient").click()
    page.get_by_text(re.compile(rf"Example: .*{first}")).first.wait_for()
    field = page.get_by_label(re.compile(r"Age at diagnosis"))
    assert field.input_value() == f"{age:.0f}"
    assert page.get_by_text("Age not given").count() == 0

    other = next(pid for pid in index.patient_ids if pid != first)
    paths = write_nifti_three(tmp_path / "nii", dataset_patient(synthetic_root, index.patient_ids.index(other)).slices)
    page.locator("[data-testid='stFileUploader'] input[type='file']").first.set_input_files([str(p) for p in
                                                                                             paths.values()])
    page.get_by_text(re.compile(r"upload \(3 file\(s\)\)", re.I)).first.wait_for()
    page.get_by_text(re.compile(r"Age not given")).first.wait_for()
    assert page.get_by_label(re.compile(r"Age at diagnosis")).input_value() == ""
    assert page.get_by_text("Sex not given").count() >= 1
    assert page.locator("[data-testid='stException']").count() == 0

