"""Whole patient in a real browser: upload a NIfTI patient, see the 3D view and the volume, download the NIfTI mask."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import nibabel as nib
import pytest
from browser_steps import open_from_sidebar, open_whole_patient
from patient_files import dataset_patient, real_or_phantom_root, write_nifti_4d

from lggdemo.data.kaggle import scan_dataset
from lggdemo.models import weights


def test_nifti_patient_3d_view_volume_and_mask_download(
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
    clinical = index.clinical_for(patient.name)

    page.goto(start_app())
    open_from_sidebar(page, "Predict")
    open_whole_patient(page)
    page.locator("input[type=file]").first.set_input_files(str(nifti))
    page.get_by_text(f"{patient.name}: nifti upload").wait_for()  # the upload's run first, then the form's
    if clinical.age is not None:
        page.get_by_label("Age at diagnosis (years; leave empty if unknown)").fill(str(int(clinical.age)))
        page.get_by_role("button", name="Apply to the grade").click()

    page.get_by_text("Tumour volume", exact=True).first.wait_for()
    volume = page.locator("[data-testid='stMetric']").filter(has_text="Tumour volume").first
    assert re.search(r"\d+\.\d mL", volume.inner_text()), volume.inner_text()
    chart3d = page.locator("[data-testid='stPlotlyChart']").filter(has_text=patient.name)  # its title
    chart3d.wait_for(state="attached")
    chart3d.scroll_into_view_if_needed()  # plotly draws the WebGL scene once the chart is on screen
    chart3d.locator("canvas").first.wait_for()
    assert page.locator("[data-testid='stException']").count() == 0

    with page.expect_download() as info:
        page.get_by_role("button", name="Download mask (NIfTI)").click()
    saved = tmp_path / "mask.nii.gz"
    info.value.save_as(saved)
    mask = nib.Nifti1Image.from_bytes(gzip.decompress(saved.read_bytes()))
    source = nib.load(str(nifti))
    assert mask.shape == source.shape[:3] and (mask.affine == source.affine).all()

    page.mouse.move(0, 0)
    page.wait_for_timeout(1500)  # the 3D scene paints after its data arrives
    shot = save_screenshot(page, "patient")
    assert shot.is_file() and shot.stat().st_size > 10_000
