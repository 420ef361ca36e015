"""Direction and orientation in a real browser (issue 29): the slice sliders are named from the data and slice 1 is
the inferior end, the slice pictures carry their orientation letters (the whole-patient slice and 3D view: in
``test_patient_browser``'s journey), and an uploaded file that is not used is named in a message."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from browser_steps import has_orientation_letters, open_from_sidebar, open_whole_patient, page_image
from patient_files import dataset_patient, kaggle_zip, real_or_phantom_root, write_nifti_4d

from lggdemo.data.kaggle import scan_dataset
from lggdemo.models import weights

SLICE_LABEL = "Slice (inferior → superior)"


def _head_area(picture: np.ndarray) -> int:
    return int((picture.max(axis=-1) > 40).sum())


def test_eda_slider_names_slice_1_inferior_as_the_anatomy_shows(request: pytest.FixtureRequest, start_app, page,
                                                                 synthetic_root: Path) -> None:
    root = real_or_phantom_root(request, synthetic_root)
    index = scan_dataset(root)
    n = len(index.patients[index.patient_ids[0]])  # the slice browser opens on the first patient
    page.goto(start_app({"LGG_DATA_DIR": str(root)}) + "/eda")
    page.get_by_text("Slice browser").wait_for()
    slider = page.get_by_role("slider", name=SLICE_LABEL)
    slider.wait_for()
    assert page.get_by_text("head → foot").count() == 0
    pictures = page.locator("[data-testid='stImage'] img")
    pictures.first.wait_for()
    assert has_orientation_letters(page_image(page, pictures.nth(1)))  # the FLAIR picture of the slice browser
    if root == synthetic_root:
        return  # the phantoms have no anatomy to check the words against
    # the cut through the face and skull base at slice 2 holds more head than the vertex at the last but one
    slider.focus()
    slider.press("Home")
    slider.press("ArrowRight")
    page.get_by_text(re.compile(r"· slice 2 of \d+")).wait_for()
    low = _head_area(page_image(page, page.locator("[data-testid='stImage'] img").nth(1)))
    slider.press("End")
    slider.press("ArrowLeft")
    page.get_by_text(f"· slice {n - 1} of {n}").wait_for()
    high = _head_area(page_image(page, page.locator("[data-testid='stImage'] img").nth(1)))
    assert low > 1.3 * high, (low, high)


def test_a_zip_beside_a_nifti_is_named_in_a_message(start_app, page, synthetic_root: Path, tiny_weights: Path,
                                                     tmp_path: Path) -> None:
    if not weights.is_complete(weights.BUNDLED_DIR):
        weights.set_active(tiny_weights)
    patient = dataset_patient(synthetic_root)
    nifti = write_nifti_4d(tmp_path / "case07.nii.gz", patient.slices)
    extra = tmp_path / "second_patient.zip"
    extra.write_bytes(kaggle_zip(patient))
    page.goto(start_app())
    open_from_sidebar(page, "Predict")
    open_whole_patient(page)
    page.locator("input[type=file]").first.set_input_files([str(nifti), str(extra)])
    page.get_by_text("case07: nifti upload").wait_for()
    warning = page.locator("[data-testid='stAlert']").filter(has_text="second_patient.zip")
    warning.wait_for()
    assert "not used" in warning.inner_text() and "zip beside other files" in warning.inner_text()
    assert page.locator("[data-testid='stException']").count() == 0
