"""The Predict page's whole-patient mode under AppTest: example patient, NIfTI upload with assignment, bad uploads."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from patient_files import dataset_patient, write_nifti_three
from streamlit.testing.v1 import AppTest

from lggdemo.data.kaggle import scan_dataset
from lggdemo.inference.examples import SEEN_NEITHER, SEEN_VALIDATION
from lggdemo.inference.grade import RAW_SCORE_LABEL
from lggdemo.models import weights


@pytest.fixture()
def app(predict_app: AppTest) -> AppTest:
    """The Predict page switched to whole-patient mode."""
    predict_app.radio(key="predict_input_mode").set_value("Whole patient").run()
    assert not predict_app.exception, predict_app.exception
    return predict_app


def grade_charts(at: AppTest) -> list:
    """The page's charts other than the lesson's threshold curve (which every view with a lesson has)."""
    return [c for c in at.get("plotly_chart") if not str(getattr(c, "key", "") or "").endswith("_threshold_curve")]


def texts(at: AppTest) -> str:
    kinds = ("error", "warning", "info", "markdown", "caption", "success")
    return "\n".join(str(e.value) for kind in kinds for e in getattr(at, kind))


def test_example_patient_shows_volume_grade_3d_and_downloads(app: AppTest, synthetic_root: Path) -> None:
    assert "Try an example patient" in [b.label for b in app.button]
    app.button(key="patient_example").click().run()
    assert not app.exception, app.exception
    index = scan_dataset(synthetic_root)
    pid = index.patient_ids[0]
    assert f"{pid}, {SEEN_NEITHER} ({len(index.patients[pid])} slices" in texts(app)
    assert f"Dice on a patient {SEEN_NEITHER}." in texts(app)
    labels = {m.label: m for m in app.metric}
    assert labels["Tumour volume"].value.endswith("voxels")  # the phantoms record no spacing
    assert "spacing unknown" in texts(app) or "no voxel spacing" in texts(app)
    # the tiny card's grade AUC interval reaches 0.5: no P(G3), a sentence instead of the bar
    assert "Per-volume Dice vs uploaded masks" in labels and "Patient P(G3)" not in labels
    assert 0.0 <= float(labels["Per-volume Dice vs uploaded masks"].value) <= 1.0
    assert "no better than chance (AUC 0.61" in texts(app) and RAW_SCORE_LABEL in [e.label for e in app.expander]
    assert "not a calibrated probability" in texts(app) and "not a medical device" in texts(app)
    assert len(grade_charts(app)) == 1  # the 3D view only (the lesson's threshold curve aside)
    assert {b.label for b in app.get("download_button")} >= {
        "Download mask (NIfTI)", "Download masks (PNG zip)", "Download report (JSON)", "Download report (CSV)"}
    slider = app.slider[0]
    assert slider.label == "Slice (inferior → superior)" and slider.max == len(index.patients[pid])
    assert slider.value != 1 or len(index.patients[pid]) == 1  # starts on the largest predicted tumour slice or mid-way
    slider.set_value(1).run()
    assert not app.exception
    assert app.slider[0].value == 1 and "Tumour on this slice:" in texts(app)


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
def test_nifti_upload_with_channel_assignment(app: AppTest, synthetic_root: Path, tmp_path: Path) -> None:
    patient = dataset_patient(synthetic_root, 1)
    paths = write_nifti_three(tmp_path / "nii", patient.slices)
    app.file_uploader(key="patient_files").set_value(
        [(p.name, p.read_bytes(), "application/gzip") for p in paths.values()]).run()
    assert not app.exception, app.exception
    boxes = {s.label: s for s in app.selectbox}
    assert boxes["FLAIR"].value == "patient_flair.nii.gz" and boxes["pre-contrast"].value == "patient_t1.nii.gz"
    labels = {m.label: m for m in app.metric}
    assert labels["Tumour volume"].value.endswith("mL")
    assert "Download mask (NIfTI)" in {b.label for b in app.get("download_button")}
    boxes["FLAIR"].set_value("(none)").run()  # a refused assignment: a message, the page stays
    assert not app.exception
    assert any("FLAIR" in e.value for e in app.error)


@pytest.mark.parametrize("name, data, message", [
    ("slip.zip", None, "escapes the archive's folder"),
    ("notes.zip", b"this is not a zip", "not a readable zip"),
])
def test_bad_uploads_give_an_error_and_the_page_stays(app: AppTest, name: str, data: bytes | None, message: str) -> None:
    if data is None:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("../../outside.png", b"x")
        data = buf.getvalue()
    app.file_uploader(key="patient_files").set_value([(name, data, "application/zip")]).run()
    assert not app.exception, app.exception
    assert any(message in e.value for e in app.error)
    app.button(key="patient_example").click().run()  # still alive: the example works afterwards
    assert not app.exception and "Tumour volume" in [m.label for m in app.metric]


def test_example_patients_prefer_validation_and_a_good_card_shows_the_bar(app: AppTest, tiny_weights: Path,
                                                                         synthetic_root: Path, tmp_path: Path) -> None:
    """With a card whose split names phantoms and whose grade AUC interval excludes 0.5: the example is the
    validation patient, labelled so beside its Dice, and the patient P(G3) and its bar are shown."""
    import shutil

    pids = scan_dataset(synthetic_root).patient_ids
    other = tmp_path / "good"
    shutil.copytree(tiny_weights, other)
    card = weights.read_card(other)
    card["split"] = {"train": pids[:2], "val": [pids[2]]}
    card["grade"]["metrics"]["auc"]["ci95"] = [0.55, 0.8]
    weights.write_card(other, card)
    weights.set_active(other)
    app.run()
    app.button(key="patient_example").click().run()
    assert not app.exception, app.exception
    assert f"{pids[2]}, {SEEN_VALIDATION}" in texts(app) and f"Dice on a {SEEN_VALIDATION}." in texts(app)
    assert "Patient P(G3)" in [m.label for m in app.metric] and len(grade_charts(app)) == 2
    assert "no better than chance" not in texts(app)


def test_the_lesson_follows_the_slice_in_view_in_whole_patient_mode(app: AppTest) -> None:
    """Issue 14 asks for the teaching layer in both modes: the whole-patient slice scroller drives it, and its
    Threshold redraws the slice's Dice against the patient's own masks."""
    app.button(key="patient_example").click().run()
    assert not app.exception, app.exception
    assert "2D clean-up only" in texts(app)
    dice = [m.value for m in app.markdown if m.value.startswith("Dice at threshold")]
    assert dice and dice[0].startswith("Dice at threshold 0.50:")
    app.slider(key="patient_teach_threshold").set_value(0.45).run()
    assert not app.exception, app.exception
    after = [m.value for m in app.markdown if m.value.startswith("Dice at threshold")]
    assert after and after[0].startswith("Dice at threshold 0.45:") and after[0] != dice[0]
    assert any(t.label.startswith("1") for t in app.tabs)  # the numbered steps
