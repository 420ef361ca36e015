"""Steps several browser tests take the same way, written once."""

from __future__ import annotations

import base64
import io
from urllib.parse import urljoin

import numpy as np
from PIL import Image
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from lggdemo.viz.orientation import letter_pixels

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


def page_image(page: object, img: object, tries: int = 5) -> np.ndarray:
    """The RGB pixels a page's <img> shows, fetched from the server (or decoded from a data URI).

    A served picture is a media file the next rerun replaces: read once the page has settled, and read the src
    afresh when the file it named is already gone (a 404, or the connection reset while a rerun replaced it)."""
    for attempt in range(tries):
        page.wait_for_function("() => !document.querySelector('[data-stale=\"true\"]')")
        src = img.get_attribute("src") or ""
        if src.startswith("data:"):
            return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB"))
        try:
            response = page.request.get(urljoin(page.url, src))
            if response.ok:
                return np.asarray(Image.open(io.BytesIO(response.body())).convert("RGB"))
        except PlaywrightError:
            if attempt == tries - 1:
                raise
        page.wait_for_timeout(500)
    raise AssertionError(f"the picture {src} could not be fetched in {tries} tries")


def has_orientation_letters(picture: np.ndarray) -> bool:
    """A letter at the middle of each of the four edges."""
    marked = letter_pixels(picture)
    h, w = marked.shape
    band, mid = max(8, h // 8), slice(int(h * 0.4), int(h * 0.6))
    centre = slice(int(w * 0.4), int(w * 0.6))
    return all(region.any() for region in (marked[:band, centre], marked[-band:, centre], marked[mid, :band],
                                           marked[mid, -band:]))
