"""The one-page PDF: the JSON report's numbers in its text, its identifiers as uploaded, the page's grade sentence,
three key slices with the diameters; a study without tumour says so and draws no diameter."""

from __future__ import annotations

import dataclasses
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
from lggdemo.data.directions import KAGGLE_EDGES, EdgeLetters
from lggdemo.inference.corrected import MASK_NOTES, correct_volume
from lggdemo.inference.grade import PatientGrade
from lggdemo.inference.reports import DIGITS, grade_fields, patient_report_document, patient_row
from lggdemo.patient.orientation import edge_letters
from lggdemo.patient.readers import open_path
from lggdemo.report import PdfReportError, key_slices, study_pdf
from lggdemo.report import pdf as pdf_module
from lggdemo.report.pdf import NO_TUMOUR, grade_statement, slice_picture
from lggdemo.viz.measurements import LONGEST_COLOUR, PERPENDICULAR_COLOUR, draw_diameters
from lggdemo.viz.orientation import letter_pixels
from lggdemo.viz.overlay import channel_rgb, overlay_mask

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


def _exact_colour_px(pdf: bytes, colour: tuple[int, int, int]) -> int:
    """Pixels of exactly ``colour`` in the PDF's embedded pictures (lossless, so exact). The diameter lines are
    drawn unblended in their colours; the orientation letters' yellow (close to the longest diameter's) is another
    value, so an exact count tells them apart where a rendered page's tolerance could not."""
    page = PdfReader(io.BytesIO(pdf)).pages[0]
    return sum(int((np.asarray(im.image.convert("RGB")) == np.array(colour)).all(axis=2).sum()) for im in page.images)


def test_pdf_renders_with_the_diameters_drawn(study, row, tmp_path: Path) -> None:  # noqa: ANN001
    vol, prediction = study
    pdf = study_pdf(patient_report_document([row], None, CARD), vol.slices, prediction.mask)
    page = _render(pdf, tmp_path)
    assert page.size == (1654, 2339)  # A4 at 200 dpi
    assert _has_colour(page, PERPENDICULAR_COLOUR)
    assert _exact_colour_px(pdf, LONGEST_COLOUR) >= 20 and _exact_colour_px(pdf, PERPENDICULAR_COLOUR) >= 20


def test_no_tumour_says_so_and_draws_no_diameter(study, tmp_path: Path) -> None:  # noqa: ANN001
    vol, prediction = study
    empty = fake_prediction(vol, np.zeros(vol.slices.shape[:3], np.uint8))
    row = patient_row(vol, empty)
    assert row["diameter_lines"] is None and row["longest_mm"] is None and row["measurable"] is False
    pdf = study_pdf(patient_report_document([row], None, CARD), vol.slices, empty.mask)
    text = _text(pdf)
    assert " ".join(NO_TUMOUR.split()) in text and "Longest axial diameter" not in text
    page = _render(pdf, tmp_path)
    assert not _has_colour(page, PERPENDICULAR_COLOUR, min_px=1)
    assert _exact_colour_px(pdf, LONGEST_COLOUR) == 0 and _exact_colour_px(pdf, PERPENDICULAR_COLOUR) == 0


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


def test_pdf_states_which_mask_it_describes(study, row) -> None:  # noqa: ANN001
    """The model's and a corrected report say plainly which mask they measure; the corrected one with its own
    volume, the JSON's (the corrected voxels times the voxel volume), never the model's."""
    vol, prediction = study
    model_doc = json.loads(json.dumps(patient_report_document([row], None, CARD)))
    model_text = _text(study_pdf(model_doc, vol.slices, prediction.mask, generated=WHEN))
    assert "Mask: the model's prediction." in model_text and " ".join(MASK_NOTES["model"].split()) in model_text
    assert "corrected" not in model_text.lower()

    edits = prediction.mask.copy()
    key = row["key_slice"] - 1
    edits[key, 100:140, 100:140] = 1  # a painted square and an erased neighbour slice: the volume changes
    edits[key + 1] = 0
    fixed = correct_volume(prediction, edits, vol.voxel_ml, vol.truth)
    assert fixed.edited_slices == (key + 1, key + 2)
    corrected = patient_row(vol, fixed.prediction, mask_kind="corrected", edited_slices=fixed.edited_slices)
    doc = json.loads(json.dumps(patient_report_document([corrected], None, CARD)))
    got = doc["patients"][0]
    assert got["mask"] == "corrected" and got["tumour_voxels"] == int(edits.sum())
    assert got["tumour_ml"] == pytest.approx(int(edits.sum()) * vol.voxel_ml, abs=1e-3)
    assert got["tumour_ml"] != model_doc["patients"][0]["tumour_ml"]
    text = _text(study_pdf(doc, vol.slices, fixed.prediction.mask, generated=WHEN))
    assert f"Mask: corrected by hand in the editor. {' '.join(MASK_NOTES['corrected'].split())}" in text
    assert f"Corrected slices: {key + 1}, {key + 2}." in text and "Measurements of the corrected mask" in text
    assert f"{got['tumour_ml']:.{DIGITS['tumour_ml']}f} mL" in text
    assert f"{model_doc['patients'][0]['tumour_ml']:.{DIGITS['tumour_ml']}f}" not in text
    assert "Mask: the model's prediction" not in text


def test_key_slices_carry_the_pages_orientation_letters(study, row, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """Each printed slice goes through the page's letter drawing (``viz.orientation.with_letters``) with the
    letters of the row's display (``display_edges``, from the volume's grid), and the letters are in its pixels."""
    vol, prediction = study
    assert row["display_edges"] == dataclasses.asdict(edge_letters(vol.grid))
    key = row["key_slice"] - 1
    lettered = slice_picture(vol.slices, prediction.mask, key, row)
    base = overlay_mask(channel_rgb(vol.slices[key], 1), prediction.mask[key], alpha=0.35)
    bare = draw_diameters(base, [], float(row["spacing_mm"][2]), scale=3)
    h, w = lettered.shape[:2]
    top_band = (slice(0, h // 12), slice(w // 2 - w // 16, w // 2 + w // 16))
    assert letter_pixels(lettered[top_band]).sum() > 10 and letter_pixels(bare[top_band]).sum() == 0
    assert not np.array_equal(lettered[top_band], bare[top_band])

    calls: list[EdgeLetters] = []
    real = pdf_module.with_letters

    def spy(picture: np.ndarray, letters: EdgeLetters = KAGGLE_EDGES) -> np.ndarray:
        calls.append(letters)
        return real(picture, letters)

    monkeypatch.setattr(pdf_module, "with_letters", spy)
    sideways = {**row, "display_edges": {"top": "R", "bottom": "L", "left": "P", "right": "A"}}
    study_pdf(patient_report_document([sideways]), vol.slices, prediction.mask)
    assert calls == [EdgeLetters("R", "L", "P", "A")] * 3  # the three key slices, with the row's letters
    calls.clear()
    study_pdf(patient_report_document([row]), vol.slices, prediction.mask)
    assert calls == [edge_letters(vol.grid)] * 3
