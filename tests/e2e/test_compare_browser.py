"""Compare two scans in a real browser: upload a baseline and a follow-up, see the synced view and the change table,
download the pair's PDF."""

from __future__ import annotations

from pathlib import Path

from browser_steps import open_from_sidebar
from patient_files import dataset_patient, kaggle_zip

from lggdemo.longitudinal.synthetic import make_follow_up
from lggdemo.models import weights

COMPARE_TIMEOUT_MS = 900_000


def test_upload_two_studies_see_the_change_and_download_the_pdf(
    start_app, page, save_screenshot, synthetic_root: Path, tiny_weights: Path, tmp_path: Path,
) -> None:
    if not weights.is_complete(weights.BUNDLED_DIR):
        weights.set_active(tiny_weights)
    base = dataset_patient(synthetic_root, 2)
    follow = make_follow_up(base, rotation_deg=(0.0, 0.0, 4.0), translation_mm=(3.0, -2.0, 0.0), growth=1.3).volume
    files = []
    for volume, name in ((base, "baseline"), (follow, "followup")):
        path = tmp_path / f"{name}.zip"
        path.write_bytes(kaggle_zip(volume))
        files.append(path)

    page.goto(start_app())
    open_from_sidebar(page, "Compare two scans")
    page.get_by_text("Upload a baseline and a follow-up study").wait_for()
    uploads = page.locator("input[type=file]")
    uploads.nth(0).set_input_files(str(files[0]))
    uploads.nth(1).set_input_files(str(files[1]))

    # registration and two whole-patient segmentations: minutes on two cores shared with a training run
    page.get_by_text("Baseline and follow-up, side by side").wait_for(timeout=COMPARE_TIMEOUT_MS)
    page.get_by_role("button", name="Download the pair report (PDF)").wait_for()  # the page's last element
    assert page.get_by_text("Slice (inferior to superior), both scans").count() == 1  # one slider for both
    assert page.locator("[data-testid='stSlider']").count() == 1
    assert page.locator("[data-testid='stImage']").count() >= 4  # baseline, follow-up, change, checkerboard
    assert page.locator("[data-testid='stDataFrame']").count() == 1  # the change table
    assert page.get_by_text("Normalised MI").count() >= 1
    assert page.locator("[data-testid='stException']").count() == 0

    with page.expect_download() as info:
        page.get_by_role("button", name="Download the pair report (PDF)").click()
    saved = tmp_path / "pair.pdf"
    info.value.save_as(saved)
    from pypdf import PdfReader

    text = " ".join(p.extract_text() for p in PdfReader(saved).pages)
    assert saved.read_bytes().startswith(b"%PDF") and "pair report" in text
    assert "Baseline: baseline" in text and "Follow-up: followup" in text  # the uploads' names
    save_screenshot(page, "compare")

