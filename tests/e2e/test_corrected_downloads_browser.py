"""Downloads say what they hold, in a real Chromium: after a brush stroke on a whole patient, the corrected report's
volume is the corrected volume the page shows, its PDF says it describes the corrected mask, and the model's report
keeps the model's."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from browser_steps import open_whole_patient
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from lggdemo.models import weights

EDITOR = ".st-key-patient_correct_editor"
CORRECTED = ".st-key-patient_downloads_corrected"
MODEL = ".st-key-patient_downloads_model"


def _metric(page, label: str) -> str:  # noqa: ANN001
    box = page.locator("[data-testid='stMetric']", has_text=label).first
    return box.locator("[data-testid='stMetricValue']").inner_text()


def _settled(page) -> None:  # noqa: ANN001
    """No element of a run in progress is still shown greyed out (``data-stale``), for a moment."""
    for _ in range(2):
        page.wait_for_function("() => !document.querySelector('[data-stale=\"true\"]')", timeout=120_000)
        page.wait_for_timeout(500)


def _download(page, section: str, label: str, tmp_path: Path, tries: int = 2) -> Path:  # noqa: ANN001
    """Click a download button once the page has settled. A report made on click is a deferred file that each
    rerun registers afresh (Streamlit drops the previous run's id), so a click on a button drawn by a superseded
    run gives no download: settle and click the current button again."""
    button = page.locator(section).get_by_role("button", name=label)
    button.wait_for(timeout=90_000)
    for attempt in range(tries):
        _settled(page)
        try:
            with page.expect_download(timeout=90_000) as info:
                button.click()
        except PlaywrightTimeoutError:
            if attempt == tries - 1:
                raise
            continue
        path = tmp_path / info.value.suggested_filename
        info.value.save_as(path)
        return path
    raise AssertionError("unreachable")


def _download_json(page, section: str, label: str, tmp_path: Path) -> dict:  # noqa: ANN001
    return json.loads(_download(page, section, label, tmp_path).read_text())


def _download_pdf_text(page, section: str, label: str, tmp_path: Path) -> str:  # noqa: ANN001
    from pypdf import PdfReader

    path = _download(page, section, label, tmp_path)
    return " ".join(PdfReader(io.BytesIO(path.read_bytes())).pages[0].extract_text().split())


def _same_volume(shown: str, row: dict) -> bool:
    """The page's "N voxels" or "X.XX mL" against the report row's tumour_voxels / tumour_ml."""
    value = float(re.sub(r"[^\d.]", "", shown.split()[0]))
    if shown.endswith("voxels"):
        return row["tumour_voxels"] == int(value)
    return row["tumour_ml"] is not None and abs(row["tumour_ml"] - value) < 0.006  # the page shows 2 decimals


def test_after_a_stroke_the_json_download_states_the_corrected_volume(start_app, page, tiny_weights, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LGG_RUNS_DIR", str(tmp_path / "runs"))
    if not weights.is_complete(weights.BUNDLED_DIR):
        weights.set_active(tiny_weights)
    page.goto(start_app() + "/predict")
    open_whole_patient(page)
    page.get_by_role("button", name="Try an example patient").click()
    toggle = page.get_by_text("Correct this mask", exact=True)
    toggle.wait_for()
    toggle.click()
    editor = page.locator(EDITOR)
    editor.wait_for()
    canvas = editor.locator("canvas").last
    canvas.wait_for()
    page.wait_for_timeout(1500)  # the component loads its background picture
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box
    y = box["y"] + box["height"] * 0.5
    page.mouse.move(box["x"] + box["width"] * 0.3, y)
    page.mouse.down()
    for i in range(1, 31):  # a drag across the middle of the head: it must add tumour pixels
        page.mouse.move(box["x"] + box["width"] * (0.3 + 0.4 * i / 30), y)
    page.mouse.up()
    page.get_by_text(re.compile(r"1 edit\(s\) since the model's mask")).wait_for()
    shown = _metric(page, "Tumour volume (corrected)")

    corrected = _download_json(page, CORRECTED, "Download corrected report (JSON)", tmp_path)
    row = corrected["patients"][0]
    assert row["mask"] == "corrected" and row["edited_slices"], row.get("edited_slices")
    assert _same_volume(shown, row), (shown, row["tumour_voxels"], row["tumour_ml"])
    text = _download_pdf_text(page, CORRECTED, "Download corrected report (PDF)", tmp_path)
    assert "Mask: corrected by hand in the editor." in text and "Measurements of the corrected mask" in text
    volume = f"{row['tumour_ml']:.3f} mL" if row["tumour_ml"] is not None else f"{row['tumour_voxels']} voxels"
    assert volume in text, (volume, text[:600])

    model = _download_json(page, MODEL, "Download report (JSON)", tmp_path)["patients"][0]
    assert model["mask"] == "model" and model["edited_slices"] == []
    assert model["tumour_voxels"] != row["tumour_voxels"]
    assert page.locator("[data-testid='stException']").count() == 0
