"""The Predict page on a projector's width, in a real Chromium: the mask editor's canvas fits its column, so the
whole slice can be reached, and nothing overlaps at 1024, 1280 and 1920 px; at 1100 px a brush stroke at the
slice's right edge lands; the editor's download button shows its whole label at every width. Saves
predict-1024.png and predict-1920.png (the screenshots_dir fixture's folder)."""

from __future__ import annotations

import re

import pytest

from lggdemo.models import weights

EDITOR = ".st-key-predict_correct_editor"


def _box(page, selector: str) -> dict[str, float]:  # noqa: ANN001
    box = page.locator(selector).first.bounding_box()
    assert box, selector
    return box


def _inside(inner: dict[str, float], outer: dict[str, float], slack: float = 1.0) -> bool:
    return (inner["x"] >= outer["x"] - slack and inner["y"] >= outer["y"] - slack
            and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + slack)


def _overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return not (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])


def _settled(page) -> None:  # noqa: ANN001
    """No element of the last run is still greyed out (Streamlit marks them ``data-stale``) for a moment."""
    page.wait_for_function("() => !document.querySelector('[data-stale=\"true\"]')")
    page.wait_for_timeout(500)
    page.wait_for_function("() => !document.querySelector('[data-stale=\"true\"]')")


def _edits(page) -> int:  # noqa: ANN001
    text = page.get_by_text(re.compile(r"\d+ edit\(s\) since the model's mask")).first.inner_text()
    return int(re.search(r"(\d+) edit\(s\)", text).group(1))  # type: ignore[union-attr]


def _area(page) -> int:  # noqa: ANN001
    box = page.locator("[data-testid='stMetric']", has_text="Tumour area (corrected)").first
    return int(box.locator("[data-testid='stMetricValue']").inner_text().split()[0])


#: Whether any part of an element's text is cut: an element narrower than its content (ellipsis, hidden overflow)
#: or a text line whose box leaves the element's box.
CLIPPED_JS = """el => {
  const box = el.getBoundingClientRect();
  const cut = [];
  for (const e of [el, ...el.querySelectorAll('*')]) {
    if (e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX !== 'visible') cut.push(e.tagName);
  }
  const range = document.createRange();
  range.selectNodeContents(el);
  for (const r of range.getClientRects()) {
    if (r.width && (r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 ||
                    r.bottom > box.bottom + 1)) cut.push('text outside');
  }
  return {cut, text: el.innerText, width: box.width};
}"""


def _unclipped(page, selector: str, width: int) -> None:  # noqa: ANN001
    """The whole label of the first button under ``selector`` is shown (no ellipsis, nothing outside its box)."""
    button = page.locator(f"{selector} button").first
    got = button.evaluate(CLIPPED_JS)
    assert not got["cut"], (width, got)
    assert "Download corrected mask (PNG)" in " ".join(got["text"].split()), (width, got)


def test_editor_fits_projector_widths_and_a_right_edge_stroke_lands(start_app, page, save_screenshot,
                                                                    tiny_weights, tmp_path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LGG_RUNS_DIR", str(tmp_path / "runs"))
    if not weights.is_complete(weights.BUNDLED_DIR):
        weights.set_active(tiny_weights)
    page.set_viewport_size({"width": 1100, "height": 900})
    page.goto(start_app() + "/predict")
    page.get_by_role("button", name="Try an example").click()
    page.get_by_text("Predicted tumour on FLAIR").wait_for()
    page.get_by_text("Correct this mask", exact=True).click()
    editor = page.locator(EDITOR)
    editor.wait_for()
    canvas = editor.locator("canvas").last
    canvas.wait_for()
    page.wait_for_timeout(1500)  # the component loads its background picture

    for width in (1024, 1280, 1920, 1100):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(800)  # re-layout; the container queries follow the column's width
        _settled(page)
        canvas.scroll_into_view_if_needed()
        column = page.locator(f"{EDITOR} [data-testid='stColumn']").filter(
            has=page.locator(".st-key-predict_correct_fit")).last.bounding_box()  # the canvas's own column
        assert column
        shown = canvas.bounding_box()
        assert shown and shown["width"] >= 250, (width, shown)  # legible, never a thumbnail
        assert _inside(shown, column), (width, shown, column)  # the whole slice is inside its column
        assert shown["x"] + shown["width"] <= width, (width, shown)
        metrics = _box(page, f"{EDITOR} [data-testid='stMetric']")
        assert not _overlap(shown, metrics), (width, shown, metrics)
        _unclipped(page, ".st-key-predict_correct_dl", width)  # the editor's download keeps its whole label
        if width in (1024, 1920):
            page.mouse.move(0, 0)
            save_screenshot(page, f"predict-{width}")

    # At 1100 px: a short stroke along the slice's right edge (the last 4% of its width) paints pixels there.
    box = canvas.bounding_box()
    assert box
    before, edits = _area(page), _edits(page)
    x, y0 = box["x"] + box["width"] * 0.985, box["y"] + box["height"] * 0.30
    page.mouse.move(x, y0)
    page.mouse.down()
    for i in range(1, 21):
        page.mouse.move(x, y0 + i * box["height"] * 0.02)
    page.mouse.up()
    page.get_by_text(re.compile(rf"{edits + 1} edit\(s\) since the model's mask")).wait_for()
    assert _area(page) > before
    assert page.locator("[data-testid='stException']").count() == 0

    # Printed, the page keeps its results and drops the sidebar, the sliders and the editor.
    page.emulate_media(media="print")
    for hidden in ("[data-testid='stSidebar']", "[data-testid='stSlider']", EDITOR):
        assert not page.locator(hidden).first.is_visible(), hidden
    assert page.get_by_text("Predicted tumour on FLAIR").first.is_visible()
    page.emulate_media(media="screen")
