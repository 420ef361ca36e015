"""Steps several browser tests take the same way, written once."""

from __future__ import annotations

from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

#: How long one click on the mode gets to draw its mode before it is clicked again.
MODE_DRAW_WAIT_MS = 30_000


def open_whole_patient(page: object, tries: int = 4) -> None:
    """Switch Predict to whole-patient mode and return once that mode is drawn (its example button shows).

    A click that lands while the page's first script run is still drawing can be lost: the run ends, the radio is
    drawn again with "Slices", and a test that goes on uploads into the slice uploader (seen on a loaded CI machine).
    A user would click again; so does this, and it fails only when no click takes.
    """
    radio = page.get_by_text("Whole patient", exact=True)  # type: ignore[attr-defined]
    example = page.get_by_role("button", name="Try an example patient")  # type: ignore[attr-defined]
    for _ in range(tries - 1):
        radio.click()
        try:
            example.wait_for(timeout=MODE_DRAW_WAIT_MS)
            return
        except PlaywrightTimeoutError:
            continue
    radio.click()
    example.wait_for()


def open_from_sidebar(page: object, name: str) -> None:
    """Open a page by its link in the sidebar's navigation.

    Not ``get_by_role("link", name=...)`` on the whole page: Home links to the pages too, so once its content is drawn
    (at once on a server that has run before) that finds two links and Playwright refuses to guess.
    """
    nav = page.get_by_test_id("stSidebarNav")  # type: ignore[attr-defined]
    nav.get_by_role("link", name=name, exact=True).click()
