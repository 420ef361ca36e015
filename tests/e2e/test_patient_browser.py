"""Whole patient in a real browser, as one user's visit: upload a NIfTI patient; see the volume, the slice with its
orientation letters and the 3D view with its axis letters; download the mask, the one-page PDF report and the
probability map, and read each back.

One journey rather than three tests of the same upload: each browser test pays a whole-patient prediction and the
page's runs before it checks anything.
"""

from __future__ import annotations

import gzip
import io
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from browser_steps import has_orientation_letters, open_from_sidebar, open_whole_patient, page_image
from patient_files import dataset_patient, real_or_phantom_root, write_nifti_4d
from pypdf import PdfReader

from lggdemo import NOT_FOR_DIAGNOSIS
from lggdemo.data.kaggle import scan_dataset
from lggdemo.models import weights

SLICE_LABEL = "Slice (inferior → superior)"


def test_nifti_patient_volume_orientation_3d_view_and_downloads(
    request: pytest.FixtureRequest, start_app, page, save_screenshot, synthetic_root: Path, tiny_weights: Path,
    tmp_path: Path,
) -> None:
    if not weights.is_complete(weights.BUNDLED_DIR):
        weights.set_active(tiny_weights)
    root = real_or_phantom_root(request, synthetic_root)
    index = scan_dataset(root)
    which = max(range(len(index.patient_ids)), key=lambda i: len(index.patients[index.patient_ids[i]]))
    patient = dataset_patient(root, which)
    nifti = write_nifti_4d(tmp_path / f"{patient.name}.nii.gz", patient.slices)
    source = nib.load(str(nifti))
    clinical = index.clinical_for(patient.name)

    page.goto(start_app())
    open_from_sidebar(page, "Predict")
    open_whole_patient(page)
    page.locator("input[type=file]").first.set_input_files(str(nifti))
    page.get_by_text(f"{patient.name}: nifti upload").wait_for()  # the upload's run first, then the form's
    if clinical.age is not None:
        page.get_by_label("Age at diagnosis (years; leave empty if unknown)").fill(str(int(clinical.age)))
        page.get_by_role("button", name="Apply to the grade").click()

    # The volume, with its range.
    volume = page.locator("[data-testid='stMetric']").filter(has_text="Tumour volume (with its range)")
    volume.wait_for()
    shown = volume.locator("[data-testid='stMetricValue']").inner_text().strip()  # e.g. "12.3 mL"
    assert re.fullmatch(r"\d+\.\d mL", shown) and "range" in volume.inner_text(), volume.inner_text()

    # The slice in view carries its orientation letters; the 3D view its axis letters.
    page.get_by_role("slider", name=SLICE_LABEL).wait_for()
    slice_picture = page.locator("[data-testid='stImage']").filter(has_text="Predicted tumour on FLAIR").locator("img")
    slice_picture.wait_for()
    assert has_orientation_letters(page_image(page, slice_picture)), "no orientation letters on the whole-patient slice"
    chart3d = page.locator("[data-testid='stPlotlyChart']").filter(has_text=patient.name)  # its title
    chart3d.wait_for(state="attached")
    chart3d.scroll_into_view_if_needed()  # plotly draws the WebGL scene once the chart is on screen
    chart3d.locator("canvas").first.wait_for()
    words = set(chart3d.inner_text().split())  # the axis titles are drawn in WebGL; the end letters are text
    assert words >= set("RLAPSI"), words
    assert page.locator("[data-testid='stException']").count() == 0

    # The mask, on the upload's grid.
    with page.expect_download() as info:
        page.get_by_role("button", name="Download mask (NIfTI)").click()
    saved = tmp_path / "mask.nii.gz"
    info.value.save_as(saved)
    mask = nib.Nifti1Image.from_bytes(gzip.decompress(saved.read_bytes()))
    assert mask.shape == source.shape[:3] and (mask.affine == source.affine).all()

    # The one-page PDF, with the caveat, the patient and the volume the page shows.
    with page.expect_download() as info:
        page.get_by_role("button", name="Download report (PDF)").click()
    assert info.value.suggested_filename == f"{patient.name}_report.pdf"
    saved = tmp_path / "report.pdf"
    info.value.save_as(saved)
    reader = PdfReader(io.BytesIO(saved.read_bytes()))
    assert len(reader.pages) == 1
    text = " ".join(reader.pages[0].extract_text().split())
    assert " ".join(NOT_FOR_DIAGNOSIS.split()) in text and patient.name in text
    value = float(shown.split()[0])  # the page shows one decimal, the PDF the report's three
    assert any(abs(float(t) - value) <= 0.05 for t in text.replace("mL", " ").split() if _is_number(t)), text

    # The probability map: float32 in [0, 1] on the upload's grid.
    with page.expect_download() as info:
        page.get_by_role("button", name="Download probability map (NIfTI)").click()
    saved = tmp_path / "prob.nii.gz"
    info.value.save_as(saved)
    prob = nib.Nifti1Image.from_bytes(gzip.decompress(saved.read_bytes()))
    assert prob.shape == source.shape[:3] and np.allclose(prob.affine, source.affine)
    data = np.asarray(prob.dataobj)
    assert data.dtype == np.float32 and 0.0 <= data.min() and data.max() <= 1.0
    assert page.locator("[data-testid='stException']").count() == 0

    volume.scroll_into_view_if_needed()
    save_screenshot(page, "patient-measurements")
    page.mouse.move(0, 0)
    page.wait_for_timeout(1500)  # the 3D scene paints after its data arrives
    shot = save_screenshot(page, "patient")
    assert shot.is_file() and shot.stat().st_size > 10_000


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return "." in token


pytestmark = pytest.mark.e2e
