"""Predict in a real browser: upload a slice, see the overlay, the grade sentence and Grad-CAM, download the mask."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from browser_steps import open_from_sidebar
from PIL import Image
from playwright.sync_api import expect

from lggdemo.data.kaggle import load_mask, scan_dataset
from lggdemo.inference.grade import RAW_SCORE_LABEL
from lggdemo.models import weights


def _slice_and_clinical(request: pytest.FixtureRequest, synthetic_root: Path) -> tuple[Path, float | None, str | None]:
    """The largest-tumour slice of the first patient: real data when ../shared has it, else the phantoms."""
    try:
        root = request.getfixturevalue("real_root")
    except pytest.skip.Exception:
        root = synthetic_root
    index = scan_dataset(root)
    pid = index.patient_ids[0]
    rec = max(index.patients[pid], key=lambda r: int(load_mask(r).sum()))
    clinical = index.clinical_for(pid)
    return rec.image_path, clinical.age, clinical.sex


def test_upload_overlay_grade_cam_and_mask_download(
    request: pytest.FixtureRequest, start_app, page, save_screenshot, synthetic_root: Path, tiny_weights: Path,
    tmp_path: Path,
) -> None:
    if not weights.is_complete(weights.BUNDLED_DIR):
        weights.set_active(tiny_weights)  # LGG_RUNS_DIR is this test session's own folder (tests/conftest.py)
    image_path, age, sex = _slice_and_clinical(request, synthetic_root)

    # Through the app's own navigation, so the shell (sidebar, wide layout) is around the page.
    page.goto(start_app())
    # Exact label: before the shell's first run the sidebar briefly lists the pages/ files ("predict"), and
    # that link would open the page without the shell.
    open_from_sidebar(page, "Predict")
    page.get_by_role("button", name="Try an example").wait_for()

    # Clinical fields first, submitted through the form, then the slice: one run draws the results. (Applied after
    # the upload, the rerun drops the "Age not given" line, every element moves up one place, and for a moment the
    # previous run's elements stand beside the new ones.)
    if age is not None:
        page.get_by_label("Age at diagnosis (years; leave empty if unknown)").fill(str(int(age)))
    if sex is not None:
        page.get_by_text(sex, exact=True).click()
    page.get_by_role("button", name="Apply to the grade").click()
    page.locator("input[type=file]").first.set_input_files(str(image_path))

    expect(page.get_by_text("Predicted tumour on FLAIR")).to_have_count(1, timeout=180_000)
    if age is not None:
        assert page.get_by_text("Age not given").count() == 0  # the form's values reached the grade
    # Both the bundled card and the tiny one have a grade AUC interval reaching 0.5 (lggdemo.inference.grade): a plain
    # sentence replaces the bar, and the model's number waits in a collapsed expander.
    page.get_by_text("did no better than chance").first.wait_for()
    page.get_by_text(RAW_SCORE_LABEL).first.wait_for()
    assert page.locator("[data-testid='stPlotlyChart']").count() == 0
    page.get_by_text("Grad-CAM · Grade model").wait_for()
    page.get_by_text("Grad-CAM · Segmentation model").wait_for()
    cams = page.locator("[data-testid='stImage'] img")
    assert cams.count() >= 6  # overlay, three channels, two Grad-CAMs
    assert page.locator("[data-testid='stException']").count() == 0

    with page.expect_download() as info:
        page.get_by_role("button", name="Download predicted mask (PNG)").click()
    saved = tmp_path / "mask.png"
    info.value.save_as(saved)
    mask = np.asarray(Image.open(io.BytesIO(saved.read_bytes())))
    assert mask.shape == (256, 256) and set(np.unique(mask)) <= {0, 255}

    page.mouse.move(0, 0)  # no tooltip in the picture
    page.wait_for_timeout(500)  # let the last images paint before the capture
    shot = save_screenshot(page, "predict")
    assert shot.is_file() and shot.stat().st_size > 10_000
