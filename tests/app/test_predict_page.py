"""The Predict page under AppTest: no weights, the example button, uploads with bad files, a refused age."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from lggdemo.data.kaggle import scan_dataset
from lggdemo.inference.examples import SEEN_TRAINING, SEEN_VALIDATION
from lggdemo.inference.grade import RAW_SCORE_LABEL, grade_verdict
from lggdemo.models import weights
from lggdemo.ui.predict.slices import SLICE_RULE_CAPTION

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "predict.py")
TIMEOUT = 180


@pytest.fixture()
def app(predict_app: AppTest) -> AppTest:
    return predict_app


def grade_charts(at: AppTest) -> list:
    """The page's charts other than the lesson's threshold curve (which every view with a lesson has)."""
    return [c for c in at.get("plotly_chart") if not str(getattr(c, "key", "") or "").endswith("_threshold_curve")]


def texts(at: AppTest) -> str:
    kinds = ("error", "warning", "info", "markdown", "caption", "success")
    parts = [e.value for kind in kinds for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def test_without_weights_the_page_says_how_to_get_them(no_bundled: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights.set_active(None)
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    assert len(at.error) == 1
    msg = at.error[0].value
    assert "No trained weights are installed" in msg and "python -m lggdemo.train" in msg and "sidebar" in msg


def test_example_button_shows_masks_grade_and_cams(app: AppTest, synthetic_root: Path) -> None:
    assert "Upload one or more slices" in texts(app)
    app.button(key="predict_example").click().run()
    assert not app.exception, app.exception
    index = scan_dataset(synthetic_root)
    pid = index.patient_ids[0]
    assert pid in texts(app)
    assert app.number_input(key="predict_age").value == index.clinical_for(pid).age
    assert app.radio(key="predict_sex").value == index.clinical_for(pid).sex
    # the tiny card's grade AUC interval (0.45-0.77) reaches 0.5: a sentence instead of the bar
    assert len(grade_charts(app)) == 0 and "no better than chance (AUC 0.61" in texts(app)
    assert [e.label for e in app.expander].count(RAW_SCORE_LABEL) == 1
    labels = [m.label for m in app.metric]
    assert "Tumour area" in labels and "Dice vs ground truth" in labels and "This slice's P(G3)" not in labels
    assert "Dice on a patient not seen in training." in texts(app)  # phantoms: no split of the tiny card names them
    assert SLICE_RULE_CAPTION in texts(app)
    dice = next(m for m in app.metric if m.label == "Dice vs ground truth")
    assert 0.0 <= float(dice.value) <= 1.0
    assert "AUC" in texts(app) and "0.61" in texts(app) and "0.66" in texts(app)  # card metrics and baseline
    assert "not a diagnosis" in texts(app)
    assert "How good are these masks?" in texts(app) and "0.50 (95% CI 0.40–0.60)" in texts(app)  # the card's Dice
    assert {b.label for b in app.get("download_button")} >= {
        "Download predicted mask (PNG)", "Download report (CSV)", "Download report (JSON)"}
    # internals (layer names, the crop box) sit in a collapsed expander, not in the main text
    assert "Layer explained: `backbone.layer4" in texts(app) and "Layer explained: `decoder.blocks" in texts(app)
    assert not any(c.value.startswith("Layer") for c in app.caption)
    assert "Details for the curious" in [e.label for e in app.expander]
    # Several slices: a slider through them; moving it changes the inspected slice, not the prediction.
    slider = app.select_slider(key="predict_slice")
    slider.set_value(slider.options[-1]).run()
    assert not app.exception
    # Next press: another patient.
    app.button(key="predict_example").click().run()
    assert index.patient_ids[1] in texts(app)


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_uploads_with_bad_files_still_predict_the_good_ones(app: AppTest, synthetic_root: Path) -> None:
    index = scan_dataset(synthetic_root)
    rec = index.patients[index.patient_ids[2]][8]
    good = rec.image_path.read_bytes()
    mask = rec.mask_path.read_bytes()
    gray = _png(np.asarray(Image.open(rec.image_path))[..., 1])
    app.button(key="predict_example").click().run()  # an example first: its age must not stick to the uploads
    assert app.number_input(key="predict_age").value is not None
    app.file_uploader(key="predict_files").set_value([
        (rec.image_path.name, good, "image/tiff"),
        (rec.mask_path.name, mask, "image/tiff"),
        ("flair_only.png", gray, "image/png"),
        ("flair_only_mask.png", _png(np.zeros((64, 64), np.uint8)), "image/png"),
        ("notes.png", b"definitely not a png", "image/png"),
        ("empty.png", b"", "image/png"),
    ]).run()
    assert not app.exception, app.exception
    warnings = "\n".join(w.value for w in app.warning)
    assert "notes.png" in warnings and "empty.png" in warnings
    assert "flair_only_mask.png: the mask is 64×64 px" in warnings
    assert "2 usable slice(s) from 6 uploaded file(s)" in texts(app)
    slider = app.select_slider(key="predict_slice")
    assert list(slider.options) == ["flair_only.png", rec.image_path.name]  # natural order by name
    assert "no better than chance" in texts(app)
    # Age and sex were not given: that is said, not refused.
    assert app.number_input(key="predict_age").value is None and app.radio(key="predict_sex").value == "unknown"
    assert "Age not given" in texts(app) and "Sex not given" in texts(app)
    # The grayscale upload's conversion is said up front, and inspecting it works.
    assert "flair_only.png: Single-channel image" in texts(app)
    slider.set_value("flair_only.png").run()
    assert not app.exception


def test_refused_age_keeps_masks_and_drops_grade(app: AppTest) -> None:
    app.button(key="predict_example").click().run()
    app.number_input(key="predict_age").set_value(150.0)
    submit = next(b for b in app.get("form_submit_button") if "Apply" in b.label)
    submit.click().run()
    assert not app.exception, app.exception
    errors = "\n".join(e.value for e in app.error)
    assert "between 0 and 120" in errors and "masks still are" in errors
    assert len(grade_charts(app)) == 0
    assert "Tumour area" in [m.label for m in app.metric]


def test_activating_another_run_reloads_the_models(app: AppTest, tiny_weights: Path, tmp_path: Path) -> None:
    import shutil

    assert "tiny-test-1" in texts(app)
    other = tmp_path / "run-2"
    shutil.copytree(tiny_weights, other)
    card = weights.read_card(other)
    card["version"] = "tiny-test-2"
    weights.write_card(other, card)
    weights.set_active(other)
    app.run()
    assert not app.exception
    assert "tiny-test-2" in texts(app) and "tiny-test-1" not in texts(app)


def test_incomplete_weights_are_refused_with_a_message(no_bundled: Path) -> None:
    weights.set_active(None)
    weights.write_card(no_bundled, {"version": "broken", "files": {weights.SEG_FILE: {"sha256": "0" * 64}}})
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    msg = at.error[0].value
    assert "cannot be used" in msg and "incomplete" in msg and "python -m lggdemo.train" in msg


def _weights_copy(source: Path, dest: Path, edit: dict) -> Path:
    """A copy of a weights folder whose card is changed by ``edit`` (section -> keys to set)."""
    import shutil

    shutil.copytree(source, dest)
    card = weights.read_card(dest)
    for section, values in edit.items():
        card.setdefault(section, {}).update(values)
    weights.write_card(dest, card)
    return dest


def test_bundled_card_states_its_grade_as_its_interval_allows(synthetic_root: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever weights ship, the page quotes their card's mask estimate and states a P(G3) only where the card's
    grade AUC interval (out of fold when recorded) lies above chance; otherwise the base-rate sentence."""
    if not weights.is_complete(weights.BUNDLED_DIR):
        pytest.skip("the bundled weights are not installed")
    monkeypatch.setenv("LGG_DATA_DIR", str(synthetic_root))
    weights.set_active(None)
    card = weights.read_card(weights.BUNDLED_DIR)
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.run()
    at.button(key="predict_example").click().run()
    assert not at.exception, at.exception
    assert card["version"] in texts(at)
    seg = card["segmentation"]
    before_3d = seg["cross_validation"].get("postprocess") != seg["postprocess"]
    assert "cross-validated over every patient" + (" (scored before the 3D rule)" if before_3d else "") in texts(at)
    verdict = grade_verdict(card)
    lo, hi = verdict.auc.ci95
    shown = "\n".join(i.value for i in at.info)
    if verdict.informative:
        assert lo > 0.5 and len(grade_charts(at)) == 1 and RAW_SCORE_LABEL not in [e.label for e in at.expander]
        return
    assert lo <= 0.5 and f"95% CI {lo:.2f}–{hi:.2f}), so no per-patient probability is shown" in shown
    assert f"In this cohort, {card['grade']['base_rate_g3']['value']:.0%} of patients are grade III" in shown
    assert len(grade_charts(at)) == 0 and "This slice's P(G3)" not in [m.label for m in at.metric]
    (raw,) = [e for e in at.expander if e.label == RAW_SCORE_LABEL]
    assert "Model output for this patient" in raw.markdown[0].value


def test_a_card_that_beats_chance_shows_the_bar(app: AppTest, tiny_weights: Path, tmp_path: Path) -> None:
    auc = dict(weights.read_card(tiny_weights)["grade"]["metrics"]["auc"], ci95=[0.55, 0.8])
    metrics = dict(weights.read_card(tiny_weights)["grade"]["metrics"], auc=auc)
    weights.set_active(_weights_copy(tiny_weights, tmp_path / "good-grade", {"grade": {"metrics": metrics}}))
    app.run()
    app.button(key="predict_example").click().run()
    assert not app.exception, app.exception
    assert len(grade_charts(app)) == 1 and "This slice's P(G3)" in [m.label for m in app.metric]
    assert "no better than chance" not in texts(app) and RAW_SCORE_LABEL not in [e.label for e in app.expander]


def test_examples_come_from_the_validation_split_and_say_so(app: AppTest, tiny_weights: Path, tmp_path: Path,
                                                            synthetic_root: Path) -> None:
    pids = scan_dataset(synthetic_root).patient_ids
    split = {"train": pids[:3], "val": [pids[4]]}
    weights.set_active(_weights_copy(tiny_weights, tmp_path / "split", {"split": split}))
    app.run()
    app.button(key="predict_example").click().run()
    assert not app.exception, app.exception
    assert f"{pids[4]}, {SEEN_VALIDATION}" in texts(app) and f"Dice on a {SEEN_VALIDATION}." in texts(app)
    app.button(key="predict_example").click().run()  # the only validation patient again
    assert f"{pids[4]}, {SEEN_VALIDATION}" in texts(app)
    # an upload named after a training patient is labelled as one
    rec = scan_dataset(synthetic_root).patients[pids[0]][8]
    app.file_uploader(key="predict_files").set_value([(rec.image_path.name, rec.image_path.read_bytes(), "image/tiff"),
                                                      (rec.mask_path.name, rec.mask_path.read_bytes(), "image/tiff")]).run()
    assert not app.exception, app.exception
    assert f"Dice on a {SEEN_TRAINING}." in texts(app)


def test_an_upload_whose_reading_was_interrupted_is_read_on_the_next_run(app: AppTest, synthetic_root: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A rerun can stop the script in the middle of reading an upload (Streamlit raises at the next session-state
    access when another click or form arrives). The next run must read the upload, not skip it as already read."""
    from lggdemo.ui.predict import slices

    real = slices.clinical_fields.adopt
    calls: list[object] = []

    def interrupted_once(*args: object, **kwargs: object) -> None:
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("interrupted by a rerun")
        real(*args, **kwargs)

    monkeypatch.setattr(slices.clinical_fields, "adopt", interrupted_once)
    index = scan_dataset(synthetic_root)
    rec = index.patients[index.patient_ids[1]][8]
    app.file_uploader(key="predict_files").set_value([(rec.image_path.name, rec.image_path.read_bytes(),
                                                      "image/tiff")]).run()
    assert app.exception  # the stand-in interruption stopped the first run mid-read
    app.run()
    assert not app.exception, app.exception
    assert len(calls) == 2 and "1 usable slice(s) from 1 uploaded file(s)" in texts(app)
