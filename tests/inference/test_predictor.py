"""Predictor: the trainer's pipeline step for step, shapes and ranges, bad input, reports and the example case."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lggdemo.data.imageio import SLICE_SIZE, read_uploads
from lggdemo.data.kaggle import Clinical, scan_dataset
from lggdemo.inference.examples import (
    SEEN_NEITHER,
    SEEN_TRAINING,
    SEEN_VALIDATION,
    example_case,
    example_patients,
    seen_label,
    seen_label_for_name,
)
from lggdemo.inference.predictor import InputError, Predictor, safe_clinical
from lggdemo.inference.reports import SLICE_COLUMNS, slice_report_csv, slice_report_json
from lggdemo.models import preprocess
from lggdemo.models.card import ModelCard, card_metric
from lggdemo.models.networks import masks_from_logits, patient_logit, seg_logits
from lggdemo.models.preprocess import ClinicalInputError


@pytest.fixture(scope="module")
def predictor(tiny_weights: Path) -> Predictor:
    # The reference engine: these tests check the pipeline against PyTorch step for step, on untrained models whose
    # probabilities hover at 0.5; ONNX Runtime's agreement with it is tests/models/test_engine.py's business.
    return Predictor.from_directory(tiny_weights, "cpu", engine="torch")


@pytest.fixture(scope="module")
def slices(synthetic_root: Path) -> list[np.ndarray]:
    index = scan_dataset(synthetic_root)
    recs = index.patients[index.patient_ids[0]]
    from lggdemo.data.kaggle import load_image

    return [load_image(r) for r in recs[len(recs) // 2 - 1 : len(recs) // 2 + 2]]


@pytest.mark.parametrize("flip_tta", [False, True])
def test_pipeline_matches_the_trainer_steps(predictor: Predictor, slices: list[np.ndarray], flip_tta: bool,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(predictor, "seg_config", dataclasses.replace(predictor.seg_config, flip_tta=flip_tta))
    clinical = Clinical(52.0, "male")
    result = predictor.predict(slices, clinical)
    # The documented steps, written out independently.
    with torch.no_grad():
        x = preprocess.prepare_images(slices, predictor.seg_config.image_size)
        raw = predictor.seg_model(x)
        if flip_tta:
            raw = 0.5 * (raw + torch.flip(predictor.seg_model(torch.flip(x, dims=[3])), dims=[3]))
        torch.testing.assert_close(raw, seg_logits(predictor.seg_model, predictor.seg_config, x))
        masks = masks_from_logits(raw, predictor.seg_config, out_size=256)
        crops = preprocess.crop_tumour(preprocess.prepare_images(slices, 256), masks, predictor.grade_config.image_size)
        clin = torch.from_numpy(preprocess.encode_clinical(clinical, predictor.grade_config.age_scale))
        logits = predictor.grade_model(crops, clin[None].repeat(len(slices), 1))[:, 0].numpy()
    areas = masks.reshape(len(masks), -1).sum(1)
    for s, m, lg, a in zip(result.slices, masks, logits, areas, strict=True):
        np.testing.assert_array_equal(s.mask, m)
        assert s.area_px == a
        assert s.grade_logit == pytest.approx(float(lg), abs=1e-4)
    expect = 1 / (1 + np.exp(-patient_logit(logits, areas)))
    assert result.grade.raw_score == pytest.approx(expect, abs=1e-5)


def test_shapes_ranges_and_determinism(predictor: Predictor, slices: list[np.ndarray]) -> None:
    a = predictor.predict(slices, Clinical(40.0, "female"), names=["x", "y", "z"])
    b = predictor.predict(slices, Clinical(40.0, "female"), names=["x", "y", "z"])
    assert [s.name for s in a.slices] == ["x", "y", "z"]
    for s, t in zip(a.slices, b.slices, strict=True):
        assert s.mask.shape == (SLICE_SIZE, SLICE_SIZE) and s.mask.dtype == np.uint8
        assert set(np.unique(s.mask)) <= {0, 1}
        assert s.probability.shape == (SLICE_SIZE, SLICE_SIZE)
        assert 0.0 <= s.probability.min() and s.probability.max() <= 1.0
        assert 0.0 <= s.grade_prob <= 1.0
        assert 0 < s.brain_px <= SLICE_SIZE**2 and 0 <= s.area_in_brain_px <= min(s.area_px, s.brain_px)
        assert s.area_pct_brain is not None and 0.0 <= s.area_pct_brain <= 100.0
        np.testing.assert_array_equal(s.mask, t.mask)
        assert s.grade_logit == t.grade_logit
        # The mask is the displayed probability thresholded at 0.5 (same logits, no component filter here).
        np.testing.assert_array_equal(s.mask.astype(bool), s.probability > 0.5)
    assert 0.0 <= a.grade.raw_score <= 1.0 and a.grade.raw_score == b.grade.raw_score
    assert a.model_version == "tiny-test-1" and a.device.startswith("CPU")


def test_batching_does_not_change_results(predictor: Predictor, slices: list[np.ndarray],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    many = predictor.predict(slices, Clinical(60.0, None))
    monkeypatch.setattr(predictor, "batch_size", 1)
    one = predictor.predict(slices, Clinical(60.0, None))
    for s, t in zip(one.slices, many.slices, strict=True):
        np.testing.assert_array_equal(s.mask, t.mask)
        assert s.grade_logit == pytest.approx(t.grade_logit, abs=1e-4)


def test_clinical_fields_reach_the_grade_model(predictor: Predictor, slices: list[np.ndarray]) -> None:
    known = predictor.predict(slices[:1], Clinical(70.0, "male"))
    unknown = predictor.predict(slices[:1], Clinical())
    assert known.grade.raw_score != unknown.grade.raw_score
    np.testing.assert_array_equal(known.slices[0].mask, unknown.slices[0].mask)


def test_refused_or_missing_clinical(predictor: Predictor, slices: list[np.ndarray]) -> None:
    with pytest.raises(ClinicalInputError, match="between 0 and 120"):
        predictor.predict(slices, Clinical(age=150.0))
    no_grade = predictor.predict(slices, None)
    assert no_grade.grade.raw_score is None and "not computed" in no_grade.grade.note
    assert all(s.grade_prob is None for s in no_grade.slices) and no_grade.slices[0].mask.shape == (256, 256)
    ok, err = safe_clinical(Clinical(age=-3.0, sex="male"))
    assert ok is None and "between" in err
    ok, err = safe_clinical(Clinical(age=33.0, sex=None, grade="G3"))
    assert err is None and ok == Clinical(33.0, None)  # the label never travels on


@pytest.mark.parametrize(
    "bad, match",
    [
        ([], "No slices"),
        ([np.zeros((256, 256), np.uint8)], "expected an"),
        ([np.zeros((256, 256, 3), np.float32)], "expected an"),
        ([np.zeros((256, 256, 4), np.uint8)], "expected an"),
    ],
)
def test_bad_arrays_raise_input_error(predictor: Predictor, bad: list[np.ndarray], match: str) -> None:
    with pytest.raises(InputError, match=match):
        predictor.predict(bad, Clinical())


def test_dice_against_ground_truth(predictor: Predictor, slices: list[np.ndarray]) -> None:
    first = predictor.predict(slices[:1], Clinical())
    pred = first.slices[0].mask
    other = 1 - pred  # disjoint from the prediction, and together they cover the slice
    res = predictor.predict(slices[:1] * 2, Clinical(), truths=[pred, other])
    assert res.slices[0].dice == pytest.approx(1.0)
    assert res.slices[1].dice == pytest.approx(0.0)
    assert res.slices[0].truth_area_px == pred.sum()


def test_uploads_end_to_end_with_mask_download_at_original_size(predictor: Predictor, slices: list[np.ndarray]) -> None:
    wide = np.asarray(Image.fromarray(slices[0]).resize((320, 200)))
    buf = io.BytesIO()
    Image.fromarray(wide).save(buf, format="PNG")
    batch = read_uploads([("w.png", buf.getvalue()), ("junk.png", b"nope")])
    result = predictor.predict_uploads(batch, Clinical(45.0, "female"))
    (s,) = result.slices
    assert s.original_size == (200, 320)
    png = np.asarray(Image.open(io.BytesIO(s.mask_png())))
    assert png.shape == (200, 320) and set(np.unique(png)) <= {0, 255}
    with pytest.raises(InputError):
        predictor.predict_uploads(read_uploads([("junk.png", b"nope")]), Clinical())


def test_reports(predictor: Predictor, slices: list[np.ndarray]) -> None:
    truth = np.zeros((256, 256), np.uint8)
    result = predictor.predict(slices[:2], Clinical(50.0, "male"), names=["a.tif", "b.tif"], truths=[truth, None])
    rows = list(csv.DictReader(io.StringIO(slice_report_csv(result).decode())))
    assert [r["file"] for r in rows] == ["a.tif", "b.tif"]
    assert tuple(rows[0]) == SLICE_COLUMNS
    assert int(rows[0]["tumour_area_px"]) == result.slices[0].area_px
    assert rows[0]["dice"] != "" and rows[1]["dice"] == ""
    # the tiny card's grade AUC interval (0.45-0.77) reaches 0.5: the model's number is withheld, its raw score kept
    assert result.grade.withheld and "no better than chance" in result.grade.withheld
    assert rows[0]["p_g3"] == "" and rows[0]["slice_p_g3"] == ""
    assert float(rows[0]["raw_score"]) == pytest.approx(result.grade.raw_score, abs=1e-4)
    assert float(rows[1]["slice_raw_score"]) == pytest.approx(result.slices[1].grade_prob, abs=1e-4)
    doc = json.loads(slice_report_json(result))
    assert doc["model_version"] == "tiny-test-1" and doc["mask"] == "model"
    assert doc["clinical"] == {"age": 50.0, "age_given": True, "sex": "male", "sex_given": True, "clinical_source": None}
    assert rows[0]["mask"] == "model" and rows[0]["corrected"] == "False" and rows[0]["age_given"] == "True"
    assert len(doc["slices"]) == 2 and "not a medical device" in doc["disclaimer"]
    assert doc["p_g3"] is None and doc["raw_score"] == pytest.approx(result.grade.raw_score, abs=1e-4)
    assert doc["grade_note"].startswith("On patients it had not seen")


def test_reports_carry_the_probability_when_the_card_shows_the_model_beats_chance(
        predictor: Predictor, slices: list[np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    card = json.loads(json.dumps(predictor.card))
    card["grade"]["metrics"]["auc"]["ci95"] = [0.55, 0.8]
    monkeypatch.setattr(predictor, "card", card)
    result = predictor.predict(slices[:1], Clinical(50.0, "male"))
    assert result.grade.withheld is None and result.grade.shown_p_g3 == result.grade.raw_score
    doc = json.loads(slice_report_json(result))
    assert doc["p_g3"] == pytest.approx(result.grade.raw_score, abs=1e-4)
    assert doc["slices"][0]["slice_p_g3"] == pytest.approx(result.slices[0].grade_prob, abs=1e-4)


def test_reports_carry_the_calibrated_probability_when_the_out_of_fold_auc_beats_chance(
        predictor: Predictor, slices: list[np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    card = json.loads(json.dumps(predictor.card))  # its validation AUC interval reaches 0.5: the out-of-fold one decides
    card["grade"]["out_of_fold"] = {"model": {"auc": {"value": 0.7, "ci95": [0.58, 0.81], "n": 87}}}
    card["grade"]["calibration"] = {"a": 0.4, "b": 0.1, "n": 87}
    monkeypatch.setattr(predictor, "card", card)
    result = predictor.predict(slices[:1], Clinical(50.0, "male"))
    expect = 1 / (1 + np.exp(-(0.4 * result.grade.logit + 0.1)))
    assert result.grade.shown_p_g3 == pytest.approx(expect)
    doc = json.loads(slice_report_json(result))
    assert doc["p_g3"] == pytest.approx(expect, abs=1e-4) and doc["raw_score"] == pytest.approx(result.grade.raw_score, abs=1e-4)
    assert doc["slices"][0]["slice_p_g3"] is None  # a slice's raw output is not what the calibration was fitted on


def test_card_metric_reads_defensively() -> None:
    card = {"grade": {"metrics": {"auc": {"value": 0.7, "ci95": [0.6, 0.8], "n": 30, "definition": "d"},
                                  "bad": {"value": "x"}, "nan": {"value": float("nan")}}}}
    m = card_metric(card, "grade", "auc")
    assert m is not None and m.value == 0.7 and m.ci95 == (0.6, 0.8) and "0.60–0.80" in m.text()
    assert card_metric(card, "grade", "bad") is None
    assert card_metric(card, "grade", "nan") is None
    assert card_metric(card, "grade", "missing") is None
    assert card_metric({}, "segmentation", "per_volume_dice_mean") is None
    assert card_metric(None, "grade", "auc") is None
    seg = {"segmentation": {"metrics": {"per_volume_dice_mean": {"value": 0.86, "n": 15}},
                            "cross_validation": {"metrics": {"per_volume_dice_mean": {"value": 0.81, "n": 76}}}}}
    assert card_metric(seg, "segmentation", "per_volume_dice_mean").value == 0.86
    assert card_metric(seg, "segmentation", "per_volume_dice_mean", cross_validated=True).n == 76
    assert card_metric(card, "grade", "auc", cross_validated=True) is None  # no estimate recorded: nothing shown


def test_example_case_has_tumour_slices_masks_and_clinical(synthetic_root: Path) -> None:
    index = scan_dataset(synthetic_root)
    case = example_case(index, 0, n_slices=3)
    assert case.patient_id == index.patient_ids[0]
    assert 1 <= len(case.batch.slices) <= 3
    assert all(s.truth is not None and s.truth.any() for s in case.batch.slices)
    assert case.clinical == index.clinical_for(case.patient_id)
    again = example_case(index, len(index.patient_ids) + 1)
    assert again.patient_id == index.patient_ids[1]  # cycles
    assert case.seen == SEEN_NEITHER  # no card: nobody was seen in training


def test_examples_prefer_validation_patients_and_say_who_was_seen(synthetic_root: Path) -> None:
    index = scan_dataset(synthetic_root)
    pids = index.patient_ids
    card = {"split": {"train": pids[:2], "val": [pids[3], pids[5], "TCGA_NOT_IN_THIS_DATASET"]}}
    assert example_patients(index, card) == [pids[3], pids[5]]
    cases = [example_case(index, i, n_slices=1, card=card) for i in range(3)]
    assert [c.patient_id for c in cases] == [pids[3], pids[5], pids[3]]
    assert {c.seen for c in cases} == {SEEN_VALIDATION} == {seen_label(card, pids[5])}
    assert seen_label(card, pids[0]) == SEEN_TRAINING and "look better than on new patients" in SEEN_TRAINING
    assert seen_label(card, pids[4]) == SEEN_NEITHER == "not seen in training"
    assert example_patients(index, {"split": {"train": pids, "val": ["elsewhere"]}}) == pids  # none here: everyone
    assert seen_label_for_name(card, f"{pids[0]}_12.tif") == SEEN_TRAINING
    assert seen_label_for_name(card, "scan.png") is None  # an unnamed upload may be anyone


def test_a_training_patient_of_weights_trained_on_everyone_gets_its_cross_validated_dice(synthetic_root: Path) -> None:
    """The bundled weights have no validation patient: each example is a training patient, so the label adds
    what a fold model that never saw it scored (the card's cross-validation), the number to expect elsewhere."""
    pids = scan_dataset(synthetic_root).patient_ids
    folds = [{"val": [pids[0]], "per_patient_dice": {pids[0]: 0.8312}}, {"val": [pids[1]], "per_patient_dice": {}}]
    card = {"split": {"train": list(pids), "val": []}, "segmentation": {"cross_validation": {"folds": folds}}}
    assert ModelCard.from_dict(card).segmentation.cross_validated_dice == {pids[0]: 0.8312}
    assert seen_label(card, pids[0]) == SEEN_TRAINING + ("; a model of the same recipe that never saw this patient "
                                                         "scored per-volume Dice 0.83")
    assert seen_label(card, pids[1]) == SEEN_TRAINING  # scored by no fold: nothing claimed
