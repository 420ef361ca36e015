"""The teaching layer in a real browser: follow the Home tour to Predict, load an example, read the errors, move
the Threshold and watch the Dice change; saves the README's screenshots (teach-*.png; the screenshots_dir fixture's folder)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from lggdemo.data.kaggle import scan_dataset
from lggdemo.inference.examples import example_case
from lggdemo.models import weights
from lggdemo.viz.threshold import TITLE as CURVE_TITLE

DICE = re.compile(r"Dice at threshold (\d\.\d\d): (\d\.\d{3})")


def _element_shot(directory: Path, page: object, selector: str, name: str, height: int = 2600) -> Path:
    """One block of the page as docs/screenshots/<name>.png (temp file, then rename), in a tall viewport."""
    dest, tmp = directory / f"{name}.png", directory / f".{name}.tmp.png"
    viewport = page.viewport_size  # type: ignore[attr-defined]
    try:
        page.set_viewport_size({"width": viewport["width"], "height": height})  # type: ignore[attr-defined]
        page.wait_for_timeout(1000)  # type: ignore[attr-defined]
        page.locator(selector).first.screenshot(path=str(tmp))  # type: ignore[attr-defined]
    finally:
        page.set_viewport_size(viewport)  # type: ignore[attr-defined]
    shutil.move(str(tmp), dest)
    return dest


def _dice(page: object) -> tuple[str, str]:
    text = page.get_by_text(DICE).first.inner_text()  # type: ignore[attr-defined]
    found = DICE.search(text)
    assert found, text
    return found.group(1), found.group(2)


def test_tour_example_threshold_and_dice(request: pytest.FixtureRequest, start_app, page, save_screenshot, screenshots_dir,
                                         synthetic_root: Path, tiny_weights: Path) -> None:
    if not weights.is_complete(weights.BUNDLED_DIR):
        weights.set_active(tiny_weights)  # LGG_RUNS_DIR is this test session's own folder (tests/conftest.py)
    try:  # real patients make the better pictures; the phantoms do where ../shared is absent
        root = request.getfixturevalue("real_root")
    except pytest.skip.Exception:
        root = synthetic_root
    page.goto(start_app({"LGG_DATA_DIR": str(root)}))

    # Home: the tour, and its second step's link to Predict.
    page.get_by_role("heading", name=re.compile("tour", re.I)).wait_for()
    page.get_by_role("link", name="1. Browse the data").wait_for()
    page.mouse.move(0, 0)
    save_screenshot(page, "teach-tour")
    page.get_by_role("link", name="1. Browse the data").click()  # step 1 opens the dataset page...
    page.get_by_role("heading", name="Dataset EDA").wait_for()
    page.go_back()  # ...and the tour is still there to take the next step
    page.get_by_role("link", name="2. Try an example").click()
    page.get_by_role("button", name="Try an example").click()

    # The lesson: errors in colour with their legend, Dice explained, the steps, uncertainty, Compare.
    page.get_by_text("Errors in colour").wait_for()
    for name in ("true positive", "false positive", "false negative"):
        page.get_by_text(name, exact=True).first.wait_for()
    page.get_by_text("Dice explained").wait_for()
    page.get_by_text("Spread of 4 test-time-augmented predictions").wait_for()
    page.get_by_text("Compare: second weights").wait_for()
    assert page.locator("[data-testid='stException']").count() == 0

    # Step 4 on the example's largest tumour (its first slice may be an edge of a few pixels that no threshold
    # finds): move the Threshold with the keyboard; the Dice under it changes.
    case = example_case(scan_dataset(root), 0, card=weights.read_card(weights.active_dir()))
    areas = [int(s.truth.sum()) for s in case.batch.slices]
    chooser = page.get_by_role("slider", name="Slice to inspect")
    chooser.focus()
    for _ in range(int(np.argmax(areas))):
        chooser.press("ArrowRight")
    page.get_by_role("tab", name="4 · Threshold").click()
    page.get_by_text(re.compile(rf"truth {max(areas)} px")).first.wait_for()
    threshold, before = _dice(page)
    assert threshold == "0.50"
    thumb = page.get_by_role("slider", name="Threshold")
    thumb.focus()
    for _ in range(25):
        thumb.press("ArrowLeft")
    page.get_by_text(re.compile(r"Dice at threshold 0\.25")).first.wait_for()
    threshold, after = _dice(page)
    assert threshold == "0.25" and after != before, (before, after)
    assert page.get_by_text(re.compile(r"Errors in colour \(threshold 0\.25")).count() == 1
    # Beside the slider: Dice and area against the threshold, with the chosen threshold marked.
    curve = page.locator(".st-key-predict_teach_lesson [data-testid='stPlotlyChart']").filter(has_text=CURVE_TITLE).first
    curve.wait_for()
    page.wait_for_function("(el) => el.textContent.includes('chosen 0.25')", arg=curve.element_handle())
    assert "Dice" in (curve.text_content() or "") and "area (px)" in (curve.text_content() or "")
    assert page.locator("[data-testid='stException']").count() == 0

    page.mouse.move(0, 0)
    lesson = _element_shot(screenshots_dir, page, ".st-key-predict_teach_lesson", "teach-lesson")
    assert lesson.is_file() and lesson.stat().st_size > 20_000
    page.get_by_role("tab", name="5 · Post-processing").click()
    page.get_by_text("Kept (red) and removed (violet) pieces").wait_for()
