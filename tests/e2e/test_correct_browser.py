"""Correcting a mask in a real Chromium, on the phantoms: open the editor, drag a brush stroke across the slice with
the real drawing component, watch the area and the Dice change, save, and find the correction on the Train page.
Saves correct.png for the README (to the screenshots_dir fixture's folder)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from browser_steps import open_from_sidebar

from lggdemo import corrections as corr
from lggdemo.data.kaggle import scan_dataset
from lggdemo.inference.examples import example_case
from lggdemo.models import weights

EDITOR = ".st-key-predict_correct_editor"


def _metric(page, label: str) -> str:  # noqa: ANN001
    box = page.locator("[data-testid='stMetric']", has_text=label).first
    return box.locator("[data-testid='stMetricValue']").inner_text()


def _no_exception(page) -> None:  # noqa: ANN001
    errors = page.locator("[data-testid='stException']")
    assert errors.count() == 0, errors.first.inner_text()


def _element_shot(directory: Path, page, selector: str, name: str) -> Path:  # noqa: ANN001
    """One block of the page as docs/screenshots/<name>.png (temp file, then rename)."""
    dest, tmp = directory / f"{name}.png", directory / f".{name}.tmp.png"
    page.locator(selector).first.screenshot(path=str(tmp))
    shutil.move(str(tmp), dest)
    return dest


def test_brush_stroke_changes_area_and_dice_then_save_and_list(start_app, page, screenshots_dir: Path, tiny_weights: Path,
                                                               synthetic_root: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LGG_RUNS_DIR", str(tmp_path / "runs"))  # the app inherits it: corrections land here
    if not weights.is_complete(weights.BUNDLED_DIR):
        weights.set_active(tiny_weights)
    # The editor opens on the first slice of the first example: stroke across its true tumour, so that the Dice
    # must move whatever the weights drew (a stroke beside both masks would leave a Dice of 0 at 0).
    case = example_case(scan_dataset(synthetic_root), 0, card=weights.read_card(weights.active_dir()))
    rows, cols = np.nonzero(case.batch.slices[0].truth)
    row, col = float(rows.mean()), float(cols.mean())
    page.goto(start_app())
    open_from_sidebar(page, "Predict")
    page.get_by_role("button", name="Try an example").click()
    page.get_by_text("Predicted tumour on FLAIR").wait_for()

    page.get_by_text("Correct this mask", exact=True).click()
    editor = page.locator(EDITOR)
    editor.wait_for()
    canvas = editor.locator("canvas").last
    canvas.wait_for()
    page.wait_for_timeout(1500)  # the component loads its background picture
    area_before, dice_before = _metric(page, "Tumour area (corrected)"), _metric(page, "Dice vs ground truth (corrected)")
    assert re.fullmatch(r"\d+ px", area_before)

    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box and box["width"] >= 500  # the 256² slice drawn at twice its size
    scale = box["width"] / 256
    x0, y = box["x"] + scale * max(col - 60, 4), box["y"] + scale * row
    page.mouse.move(x0, y)
    page.mouse.down()
    for i in range(1, 41):  # a drag right across the slice, through the tumour's centre
        page.mouse.move(x0 + i * 3 * scale, y)
    page.mouse.up()

    page.get_by_text(re.compile(r"1 edit\(s\) since the model's mask")).wait_for()
    area_after, dice_after = _metric(page, "Tumour area (corrected)"), _metric(page, "Dice vs ground truth (corrected)")
    assert area_after != area_before and int(area_after.split()[0]) > int(area_before.split()[0])
    assert dice_after != dice_before, (dice_before, dice_after)
    _no_exception(page)
    page.mouse.move(0, 0)
    page.wait_for_timeout(800)  # the fresh canvas paints the new mask
    shot = _element_shot(screenshots_dir, page, EDITOR, "correct")
    assert shot.is_file() and shot.stat().st_size > 20_000

    editor.get_by_role("button", name="Save as a training example").click()
    page.get_by_text("Saved as training example").wait_for()
    saved = corr.list_corrections()
    assert len(saved) == 1 and saved[0].usable
    assert saved[0].provenance.corrected_area_px == int(area_after.split()[0])

    open_from_sidebar(page, "Train")
    page.get_by_role("heading", name="Corrections").wait_for()
    page.get_by_text("1 usable correction(s)").wait_for()
    page.get_by_text(saved[0].id).first.wait_for()  # the picked correction, and its picture's caption
    page.get_by_text(f"{saved[0].id}: the corrected mask on FLAIR").wait_for()
    _no_exception(page)
