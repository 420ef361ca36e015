"""Home and Dataset EDA in a real Chromium: charts drawn, slice images loaded, sidebar present, screenshots saved."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.e2e

N_CHARTS = 7  # grade, sex, age, missing values, tumour fraction, slices per patient, tumour area


def _no_exception(page) -> None:
    errors = page.locator('[data-testid="stException"]')
    assert errors.count() == 0, errors.first.inner_text()


def _wait_for_charts(page) -> float:
    """Seconds until every EDA chart has drawn its SVG and the three slice images have loaded."""
    start = time.monotonic()
    page.wait_for_function(
        """n => document.querySelectorAll('.js-plotly-plot svg.main-svg').length >= n
              && [...document.querySelectorAll('[data-testid="stImage"] img')]
                 .filter(i => i.complete && i.naturalWidth > 0).length >= 3""",
        arg=N_CHARTS,
        timeout=180_000,
    )
    return time.monotonic() - start


def test_home_and_eda_render(start_app, page, save_screenshot) -> None:
    base = start_app()

    page.goto(base)
    page.get_by_role("heading", name="Lower-grade glioma MRI").wait_for()
    page.get_by_text("Not for diagnosis").first.wait_for()
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text("Synthetic phantoms (not patient data)").first.wait_for()
    sidebar.get_by_text("Device:").first.wait_for()
    _no_exception(page)
    save_screenshot(page, "home")

    page.goto(base + "/eda")
    page.get_by_role("heading", name="Dataset EDA").wait_for()
    first = _wait_for_charts(page)
    assert page.locator(".js-plotly-plot").count() == N_CHARTS
    assert page.locator("svg.main-svg").count() > 0
    sidebar.get_by_text("Synthetic phantoms (not patient data)").first.wait_for()  # the shared sidebar on every page
    page.get_by_text("Clinical table").wait_for()
    _no_exception(page)

    page.reload()
    warm = _wait_for_charts(page)
    print(f"EDA page in the browser: first {first:.2f} s, warm reload {warm:.2f} s (phantoms)")
    page.wait_for_timeout(500)  # let plotly finish its transitions before the picture
    save_screenshot(page, "eda")
