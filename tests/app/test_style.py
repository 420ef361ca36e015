"""The page's own CSS: the editor canvas's fit to its column (emulating the cascade of its container queries), the
print stylesheet's reach, and inline pictures that need no media file."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest

from lggdemo.ui.style import MIN_ZOOM, PRINT_CSS, ZOOM_STEP, fit_canvas_css

RULE = re.compile(r"@container (\w+) \(max-width: ([\d.]+)px\) \{ \.st-key-(\w+) \.stBidiComponent \{ zoom: ([\d.]+); \} \}")


def applied_zoom(css: str, width: float) -> float:
    """The zoom a browser applies at container ``width``: the last matching rule wins (same specificity)."""
    zoom = 1.0
    for match in RULE.finditer(css):
        if width <= float(match.group(2)):
            zoom = float(match.group(4))
    return zoom


@pytest.mark.parametrize("width", [160.0, 300.0, 390.0, 433.0, 511.0, 512.0, 700.0])
def test_the_canvas_never_overflows_and_fills_its_column(width: float) -> None:
    side = 512
    css = fit_canvas_css("predict_correct_fit", side)
    assert ".st-key-predict_correct_fit { container: fit_predict_correct_fit / inline-size; }" in css
    zoom = applied_zoom(css, width)
    assert side * zoom <= width + 1e-6, (width, zoom)  # never wider than its column: the whole slice is reachable
    if width >= side:
        assert zoom == 1.0  # never enlarged past its drawn size
    elif width >= side * MIN_ZOOM:
        assert side * zoom >= width - 2 * ZOOM_STEP * side, (width, zoom)  # and within two steps of filling it


def test_every_rule_names_the_same_container() -> None:
    css = fit_canvas_css("k", 400)
    names = {m.group(1) for m in RULE.finditer(css)}
    keys = {m.group(3) for m in RULE.finditer(css)}
    assert names == {"fit_k"} and keys == {"k"}
    with pytest.raises(ValueError):
        fit_canvas_css("k", 0)


def test_print_hides_the_sidebar_sliders_and_editor() -> None:
    hidden = PRINT_CSS.split("display: none")[0]
    for selector in ('[data-testid="stSidebar"]', '[data-testid="stSlider"]', '_correct_editor', '[data-testid="stButton"]'):
        assert selector in hidden
    assert PRINT_CSS.strip().startswith("@media print")


def test_inline_image_is_a_data_uri_kept_in_the_session(monkeypatch: pytest.MonkeyPatch) -> None:
    import streamlit as st

    from lggdemo.ui import style

    drawn: list[str] = []
    state: dict[str, object] = {}
    monkeypatch.setattr(st, "html", drawn.append)
    monkeypatch.setattr(st, "session_state", state)
    picture = np.zeros((4, 4, 3), np.uint8)
    picture[1, 2] = (255, 0, 0)
    style.inline_image(picture, "a <caption>", width=300)
    style.inline_image(picture, "a <caption>", width=300)
    assert len(state[style.INLINE_KEY]) == 1  # type: ignore[arg-type]  # encoded once
    html = drawn[-1]
    assert "max-width:300px" in html and "a &lt;caption&gt;" in html and "/media/" not in html
    uri = re.search(r'src="data:image/png;base64,([^"]+)"', html)
    assert uri and base64.b64decode(uri.group(1)).startswith(b"\x89PNG")
