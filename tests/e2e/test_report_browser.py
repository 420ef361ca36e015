"""The PDF report and the probability map, downloaded from the whole-patient page in a real browser."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from browser_steps import open_from_sidebar, open_whole_patient
from patient_files import dataset_patient, write_nifti_4d
from pypdf import PdfReader

from lggdemo import NOT_FOR_DIAGNOSIS
from lggdemo.models import weights


def test_pdf_report_and_probability_map_download(start_app, page, save_screenshot, synthetic_root: Path,
                                                 tiny_weights: Path, tmp_path: Path) -> None:
    if not weights.is_complete(weights.BUNDLED_DIR):
        weights.set_active(tiny_weights)
    patient = dataset_patient(synthetic_root, 3)
    nifti = write_nifti_4d(tmp_path / f"{patient.name}.nii.gz", patient.slices)

    page.goto(start_app())
    open_from_sidebar(page, "Predict")
    open_whole_patient(page)
    page.locator("input[type=file]").first.set_input_files(str(nifti))
    page.get_by_text(f"{patient.name}: nifti upload").wait_for()
    volume = page.locator("[data-testid='stMetric']").filter(has_text="Tumour volume (with its range)")
    volume.wait_for()
    pdf_button = page.get_by_role("button", name="Download report (PDF)")
    pdf_button.wait_for()
    shown = volume.locator("[data-testid='stMetricValue']").inner_text().strip()  # e.g. "12.3 mL"
    assert shown.endswith("mL") and "range" in volume.inner_text()

    with page.expect_download() as info:
        pdf_button.click()
    saved = tmp_path / "report.pdf"
    info.value.save_as(saved)
    assert info.value.suggested_filename == f"{patient.name}_report.pdf"
    reader = PdfReader(io.BytesIO(saved.read_bytes()))
    assert len(reader.pages) == 1
    text = " ".join(reader.pages[0].extract_text().split())
    assert " ".join(NOT_FOR_DIAGNOSIS.split()) in text and patient.name in text
    value = float(shown.split()[0])  # the page shows one decimal, the PDF the report's three
    assert any(abs(float(t) - value) <= 0.05 for t in text.replace("mL", " ").split() if _is_number(t)), text

    with page.expect_download() as info:
        page.get_by_role("button", name="Download probability map (NIfTI)").click()
    prob = tmp_path / "prob.nii.gz"
    info.value.save_as(prob)
    img = nib.Nifti1Image.from_bytes(gzip.decompress(prob.read_bytes()))
    source = nib.load(str(nifti))
    assert img.shape == source.shape[:3] and np.allclose(img.affine, source.affine)
    data = np.asarray(img.dataobj)
    assert data.dtype == np.float32 and 0.0 <= data.min() and data.max() <= 1.0
    assert page.locator("[data-testid='stException']").count() == 0
    volume.scroll_into_view_if_needed()
    shot = save_screenshot(page, "patient-measurements")
    assert shot.is_file()


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return "." in token


pytestmark = pytest.mark.e2e
