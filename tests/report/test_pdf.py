"""The one-page PDF: the JSON report's numbers in its text, its identifiers as uploaded, the page's grade sentence,
three key slices with the diameters; a study without tumour says so and draws no diameter."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from patient_files import SPACING, dataset_patient, fake_prediction, write_nifti_4d
from PIL import Image
from pypdf import PdfReader
from scipy import ndimage

from lggdemo import NOT_FOR_DIAGNOSIS
from lggdemo.inference.grade import PatientGrade
from lggdemo.inference.reports import DIGITS, grade_fields, patient_report_document, patient_row
from lggdemo.patient.readers import open_path
from lggdemo.report import PdfReportError, key_slices, study_pdf
from lggdemo.report.pdf import NO_TUMOUR, grade_statement
from lggdemo.viz.measurements import LONGEST_COLOUR, PERPENDICULAR_COLOUR

CARD = {"version": "card-v7", "segmentation": {"cross_validation": {"metrics": {"per_volume_dice_mean": {
    "value": 0.8172, "ci95": [0.7826, 0.8489], "n": 88, "definition": "test"}}}}}
WHEN = datetime(2026, 12, 7, 3, 0, tzinfo=timezone.utc)


def _smooth(mask: np.ndarray) -> np.ndarray:
    """A probability that crosses 0.5 at the mask's edge, so the volume range is a real range."""
    inside = ndimage.distance_transform_edt(mask, sampling=(4, 1, 1))
    outside = ndimage.distance_transform_edt(~mask, sampling=(4, 1, 1))
    return (1 / (1 + np.exp(-(inside - outside) / 1.5))).astype(np.float16)


@pytest.fixture(scope="module")
def study(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """A phantom saved as NIfTI (so it has a spacing) with its truth as the reference, and a model mask that is
    the truth shifted by a few pixels (so the agreement is not perfect)."""
    patient = dataset_patient(synthetic_root, 1)
    path = write_nifti_4d(tmp_path_factory.mktemp("pdf") / f"{patient.name}.nii.gz", patient.slices)
    vol = open_path(path).volume()
    truth = patient.truth.astype(bool)
    vol = replace(vol, truth=truth)
    mask = np.roll(truth, 3, axis=2)
    prediction = replace(fake_prediction(vol, mask.astype(np.uint8)), probability=_smooth(mask),
                         dice=0.9, truth_voxels=int(truth.sum()))
    return vol, prediction


@pytest.fixture(scope="module")
def row(study) -> dict:  # noqa: ANN001
    """The study's report row, measured once (the surface metrics are the slow part)."""
    vol, prediction = study
    return patient_row(vol, prediction)


def _text(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 1
    return " ".join(reader.pages[0].extract_text().split())


def test_pdf_text_holds_the_json_numbers(study, row) -> None:  # noqa: ANN001
    vol, prediction = study
    doc = json.loads(json.dumps(patient_report_document([row], {vol.name: ["a reader's note"]}, CARD)))
    text = _text(study_pdf(doc, vol.slices, prediction.mask, generated=WHEN))
    got = doc["patients"][0]
    assert got["spacing_mm"] == pytest.approx(list(SPACING), abs=1e-4) and got["tumour_ml_low"] < got["tumour_ml_high"]
    # with a spacing the page prints mm (the pixel lengths stay in the JSON for inputs without one)
    printed = {k: f"{got[k]:.{DIGITS[k]}f}" for k in DIGITS if isinstance(got.get(k), float) and "_px" not in k}
    assert {"tumour_ml", "longest_mm", "perpendicular_mm", "product_mm2", "mean_diameter_mm", "hd95_mm",
            "surface_dice_2mm", "volume_diff_pct"} <= set(printed)
    missing = {k: v for k, v in printed.items() if v not in text}
    assert not missing, f"numbers of the JSON absent from the PDF: {missing}"
    assert f"slice {got['key_slice']}" in text and str(got["lesions"]) in text and got["laterality"] in text
    assert " ".join(NOT_FOR_DIAGNOSIS.split()) in text
    assert vol.name in text and "2026-12-07" in text
    assert "card" not in got and "test-version" in text and "0.817 (95% CI 0.783–0.849)" in text
    assert " ".join(grade_statement(got).split()) in text and "Patient P(G3): 30%." in text


def test_grade_sentence_is_the_pages(row) -> None:  # noqa: ANN001
    withheld = PatientGrade(0.3, withheld="No better than chance; 40% are grade III.", note="A note.")
    assert grade_statement({**row, **grade_fields(withheld)}) == withheld.text  # what the page's st.info says
    assert grade_statement({**row, **grade_fields(PatientGrade(None, None, "Grade not computed."))}) == \
        "Grade not computed."
    shown = PatientGrade(float(np.log(0.42 / 0.58)))
    assert grade_statement({**row, **grade_fields(shown)}) == "Patient P(G3): 42%."  # the page's metric


def _has_colour(png: Image.Image, colour: tuple[int, int, int], tol: int = 40, min_px: int = 20) -> bool:
    a = np.asarray(png.convert("RGB")).astype(int)
    return int((np.abs(a - np.array(colour)).max(axis=2) < tol).sum()) >= min_px


def _render(pdf: bytes, tmp_path: Path) -> Image.Image:
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) is not installed: apt-get install poppler-utils")
    src = tmp_path / "report.pdf"
    src.write_bytes(pdf)
    subprocess.run(["pdftoppm", "-r", "200", "-png", "-singlefile", str(src), str(tmp_path / "page")], check=True,
                   timeout=120)
    return Image.open(tmp_path / "page.png")


def test_pdf_renders_with_the_diameters_drawn(study, row, tmp_path: Path) -> None:  # noqa: ANN001
    vol, prediction = study
    pdf = study_pdf(patient_report_document([row], None, CARD), vol.slices, prediction.mask)
    page = _render(pdf, tmp_path)
    assert page.size == (1654, 2339)  # A4 at 200 dpi
    assert _has_colour(page, LONGEST_COLOUR) and _has_colour(page, PERPENDICULAR_COLOUR)


def test_no_tumour_says_so_and_draws_no_diameter(study, tmp_path: Path) -> None:  # noqa: ANN001
    vol, prediction = study
    empty = fake_prediction(vol, np.zeros(vol.slices.shape[:3], np.uint8))
    row = patient_row(vol, empty)
    assert row["diameter_lines"] is None and row["longest_mm"] is None and row["measurable"] is False
    pdf = study_pdf(patient_report_document([row], None, CARD), vol.slices, empty.mask)
    text = _text(pdf)
    assert " ".join(NO_TUMOUR.split()) in text and "Longest axial diameter" not in text
    page = _render(pdf, tmp_path)
    assert not _has_colour(page, LONGEST_COLOUR, min_px=1) and not _has_colour(page, PERPENDICULAR_COLOUR, min_px=1)


def test_kaggle_study_without_spacing_prints_pixels_and_no_scale(synthetic_root: Path) -> None:
    patient = replace(dataset_patient(synthetic_root, 2), truth=None)  # no reference: no surface metrics to wait for
    prediction = fake_prediction(patient, dataset_patient(synthetic_root, 2).truth.astype(np.uint8))
    row = patient_row(patient, prediction)
    assert row["spacing_mm"] is None and row["longest_mm"] is None and row["longest_px"] > 0
    text = _text(study_pdf(patient_report_document([row]), patient.slices, prediction.mask))
    assert f"{row['longest_px']:.1f} px" in text and "no voxel spacing, so no mL" in text
    assert "not recorded by the card" in text


def test_key_slices_and_refusals(study, row) -> None:  # noqa: ANN001
    vol, prediction = study
    picks = key_slices(row, vol.n_slices)
    assert len(picks) == 3 and picks == sorted(picks) and row["key_slice"] - 1 in picks
    assert all(s + 1 in row["tumour_slices"] for s in picks)
    assert key_slices({"tumour_slices": [], "key_slice": None}, 20) == [5, 10, 15]
    assert key_slices({"tumour_slices": [4], "key_slice": 4}, 5) == [2, 3, 4]  # neighbours of a one-slice tumour
    doc = patient_report_document([row])
    with pytest.raises(PdfReportError, match="do not match"):
        study_pdf(doc, vol.slices[:3], prediction.mask[:3])
    with pytest.raises(PdfReportError, match="failed"):
        study_pdf(patient_report_document([patient_row(None, None, name="x.zip", error="broken")]), vol.slices,
                  prediction.mask)
