"""Direction and orientation in a real browser (issue 29): the slice sliders are named from the data and slice 1 is
the inferior end, every slice picture carries its orientation letters (and the 3D view its axis letters), and an
uploaded file that is not used is named in a message."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from urllib.parse import urljoin

import numpy as np
import pytest
from browser_steps import open_from_sidebar, open_whole_patient
from patient_files import dataset_patient, kaggle_zip, real_or_phantom_root, write_nifti_4d
from PIL import Image
from playwright.sync_api import Error as PlaywrightError

from lggdemo.data.kaggle import scan_dataset
from lggdemo.models import weights
from lggdemo.viz.orientation import letter_pixels

SLICE_LABEL = "Slice (inferior → superior)"


def _image(page, img, tries: int = 5) -> np.ndarray:  # noqa: ANN001
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


def _has_letters(picture: np.ndarray) -> bool:
    """A letter at the middle of each of the four edges."""
    marked = letter_pixels(picture)
    h, w = marked.shape
    band, mid = max(8, h // 8), slice(int(h * 0.4), int(h * 0.6))
    centre = slice(int(w * 0.4), int(w * 0.6))
    return all(region.any() for region in (marked[:band, centre], marked[-band:, centre], marked[mid, :band],
                                           marked[mid, -band:]))


def _head_area(picture: np.ndarray) -> int:
    return int((picture.max(axis=-1) > 40).sum())


def test_eda_slider_names_slice_1_inferior_as_the_anatomy_shows(request: pytest.FixtureRequest, start_app, page,
                                                                 synthetic_root: Path) -> None:
    root = real_or_phantom_root(request, synthetic_root)
    index = scan_dataset(root)
    n = len(index.patients[index.patient_ids[0]])  # the slice browser opens on the first patient
    page.goto(start_app({"LGG_DATA_DIR": str(root)}) + "/eda")
    page.get_by_text("Slice browser").wait_for()
    slider = page.get_by_role("slider", name=SLICE_LABEL)
    slider.wait_for()
    assert page.get_by_text("head → foot").count() == 0
    pictures = page.locator("[data-testid='stImage'] img")
    pictures.first.wait_for()
    assert _has_letters(_image(page, pictures.nth(1)))  # the FLAIR picture of the slice browser
    if root == synthetic_root:
        return  # the phantoms have no anatomy to check the words against
    # the cut through the face and skull base at slice 2 holds more head than the vertex at the last but one
    slider.focus()
    slider.press("Home")
    slider.press("ArrowRight")
    page.get_by_text(re.compile(r"· slice 2 of \d+")).wait_for()
    low = _head_area(_image(page, page.locator("[data-testid='stImage'] img").nth(1)))
    slider.press("End")
    slider.press("ArrowLeft")
    page.get_by_text(f"· slice {n - 1} of {n}").wait_for()
    high = _head_area(_image(page, page.locator("[data-testid='stImage'] img").nth(1)))
    assert low > 1.3 * high, (low, high)


def test_patient_slices_and_3d_view_carry_orientation_letters(request: pytest.FixtureRequest, start_app, page,
                                                              synthetic_root: Path, tiny_weights: Path,
                                                              tmp_path: Path) -> None:
    if not weights.is_complete(weights.BUNDLED_DIR):
        weights.set_active(tiny_weights)
    patient = dataset_patient(real_or_phantom_root(request, synthetic_root))
    nifti = write_nifti_4d(tmp_path / f"{patient.name}.nii.gz", patient.slices)
    page.goto(start_app())
    open_from_sidebar(page, "Predict")
    open_whole_patient(page)
    page.locator("input[type=file]").first.set_input_files(str(nifti))
    page.get_by_text("Tumour volume", exact=True).first.wait_for()
    page.get_by_role("slider", name=SLICE_LABEL).wait_for()
    shown = page.locator("[data-testid='stImage']").filter(has_text="Predicted tumour on FLAIR").locator("img")
    shown.wait_for()
    assert _has_letters(_image(page, shown)), "no orientation letters on the whole-patient slice"
    chart3d = page.locator("[data-testid='stPlotlyChart']").filter(has_text=patient.name)
    chart3d.scroll_into_view_if_needed()
    chart3d.locator("canvas").first.wait_for()
    words = set(chart3d.inner_text().split())  # the axis titles are drawn in WebGL; the end letters are text
    assert words >= set("RLAPSI"), words
    assert page.locator("[data-testid='stException']").count() == 0


def test_a_zip_beside_a_nifti_is_named_in_a_message(start_app, page, synthetic_root: Path, tiny_weights: Path,
                                                     tmp_path: Path) -> None:
    if not weights.is_complete(weights.BUNDLED_DIR):
        weights.set_active(tiny_weights)
    patient = dataset_patient(synthetic_root)
    nifti = write_nifti_4d(tmp_path / "case07.nii.gz", patient.slices)
    extra = tmp_path / "second_patient.zip"
    extra.write_bytes(kaggle_zip(patient))
    page.goto(start_app())
    open_from_sidebar(page, "Predict")
    open_whole_patient(page)
    page.locator("input[type=file]").first.set_input_files([str(nifti), str(extra)])
    page.get_by_text("case07: nifti upload").wait_for()
    warning = page.locator("[data-testid='stAlert']").filter(has_text="second_patient.zip")
    warning.wait_for()
    assert "not used" in warning.inner_text() and "zip beside other files" in warning.inner_text()
    assert page.locator("[data-testid='stException']").count() == 0
