"""A page's URL as the very first request of a fresh server still gets the whole app shell.

Streamlit's legacy ``pages/`` mode would otherwise run ``pages/train.py`` bare (lower-case file
names in the navigation, no shared sidebar) -- see ``lggdemo.ui.shell``.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e


def test_first_request_to_a_page_url_runs_through_the_shell(start_app, page) -> None:
    base = start_app(fresh=True)  # a fresh server: no script has run yet
    page.goto(f"{base}/train")
    page.get_by_role("heading", name="Train", exact=True).wait_for(timeout=180_000)
    sidebar = page.locator('[data-testid="stSidebar"]')
    # The shell's navigation titles (legacy mode would list the file names "home", "eda", ...).
    sidebar.get_by_text("Dataset EDA").first.wait_for(timeout=60_000)
    sidebar.get_by_text("Device:").first.wait_for(timeout=60_000)
    assert sidebar.get_by_text("Retrain models").count() >= 1
