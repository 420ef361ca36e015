"""A prediction with hand corrections in place: its numbers are the corrected mask's, the model's stay apart, and
the report says which mask it describes, with the clinical values used."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from patient_files import dataset_patient

from lggdemo.data.kaggle import Clinical
from lggdemo.inference.corrected import CorrectionShapeError, correct_slices, correct_volume, overlay_slices
from lggdemo.inference.grade import PatientGrade
from lggdemo.inference.predictor import PredictionResult, SlicePrediction
from lggdemo.inference.reports import (
    PATIENT_COLUMNS,
    clinical_fields,
    patient_report_csv,
    patient_report_json,
    patient_row,
    slice_report_json,
)
from lggdemo.inference.wholepatient import VolumePrediction


def _grade() -> PatientGrade:
    return PatientGrade(logit=None, note="no grade")


def _volume_prediction(mask: np.ndarray, truth: np.ndarray | None, voxel_ml: float | None) -> VolumePrediction:
    areas = mask.reshape(len(mask), -1).sum(axis=1)
    return VolumePrediction(
        name="p", mask=mask, probability=mask.astype(np.float16) * 0.9, tumour_voxels=int(mask.sum()),
        tumour_ml=None if voxel_ml is None else int(mask.sum()) * voxel_ml,
        tumour_slices=tuple(int(i) + 1 for i in np.flatnonzero(areas)), removed_voxels=3, dice=None,
        truth_voxels=None if truth is None else int(truth.sum()), grade=_grade(), clinical=Clinical(43.0, "male"),
        model_version="v1", device="cpu", spacing=(2.0, 1.0, 1.0), brain_voxels=1000,
        removed=np.zeros_like(mask))


def test_corrected_volume_recomputes_every_number_and_keeps_the_models() -> None:
    mask = np.zeros((4, 256, 256), np.uint8)
    mask[1, 100:110, 100:110] = 1  # 100 voxels on slice 2
    truth = mask.copy()
    truth[2, 100:105, 100:110] = 1  # the truth also has 50 voxels on slice 3
    model = _volume_prediction(mask, truth, voxel_ml=0.002)
    fixed_mask = overlay_slices(mask, {2: truth[2]})
    fixed = correct_volume(model, fixed_mask, 0.002, truth)
    assert fixed.edited_slices == (3,)
    p = fixed.prediction
    assert (p.tumour_voxels, p.tumour_slices, p.dice) == (150, (2, 3), 1.0)
    assert p.tumour_ml == pytest.approx(0.3)
    assert model.tumour_voxels == 100 and int(model.mask.sum()) == 100  # the model's own is untouched
    assert p.grade is model.grade and p.clinical == model.clinical  # the grade stays the model's
    with pytest.raises(CorrectionShapeError):
        correct_volume(model, fixed_mask[:3], 0.002, truth)
    with pytest.raises(CorrectionShapeError):
        overlay_slices(mask, {9: truth[2]})


def test_corrected_slices_recompute_area_and_dice() -> None:
    image = np.zeros((256, 256, 3), np.uint8)
    image[50:200, 50:200] = 120  # the head
    m = np.zeros((256, 256), np.uint8)
    m[60:70, 60:70] = 1
    truth = np.zeros((256, 256), np.uint8)
    truth[60:70, 60:80] = 1
    s = SlicePrediction(name="a.tif", mask=m, probability=m.astype(np.float32), area_px=100, brain_px=150 * 150,
                        area_in_brain_px=100, original_size=(256, 256), dice=2 * 100 / 300, truth_area_px=200)
    result = PredictionResult((s, replace(s, name="b.tif")), _grade(), Clinical(None, "female"), "cpu", "v1")
    fixed = correct_slices(result, {1: truth}, [image, image], [truth, truth])
    assert fixed.edited == (1,)
    assert fixed.result.slices[1].area_px == 200 and fixed.result.slices[1].dice == 1.0
    assert fixed.result.slices[0] is result.slices[0]
    doc = json.loads(slice_report_json(fixed.result, mask_kind="corrected", edited=fixed.edited))
    assert doc["mask"] == "corrected" and [r["corrected"] for r in doc["slices"]] == [False, True]
    assert [r["tumour_area_px"] for r in doc["slices"]] == [100, 200]
    assert doc["clinical"] == {"age": None, "age_given": False, "sex": "female", "sex_given": True,
                               "clinical_source": None}
    assert json.loads(slice_report_json(result))["mask"] == "model"


def test_patient_reports_state_their_mask_volume_and_clinical_values(synthetic_root: Path) -> None:
    volume = replace(dataset_patient(synthetic_root, 0), spacing=(2.0, 1.0, 1.0), truth=None)
    mask = np.zeros((volume.n_slices, 256, 256), np.uint8)
    mask[1, 100:110, 100:110] = 1
    model = _volume_prediction(mask, None, volume.voxel_ml)
    bigger = mask.copy()
    bigger[2, 100:110, 100:110] = 1  # slice 3 painted by hand
    fixed = correct_volume(model, bigger, volume.voxel_ml, None)
    rows = [patient_row(volume, model), patient_row(volume, fixed.prediction, mask_kind="corrected",
                                                    edited_slices=fixed.edited_slices, clinical_source="typed")]
    assert [r["mask"] for r in rows] == ["model", "corrected"]
    assert [r["tumour_voxels"] for r in rows] == [100, 200] and rows[1]["edited_slices"] == [3]
    assert rows[1]["tumour_ml"] == pytest.approx(200 * volume.voxel_ml, abs=1e-3)
    assert (rows[1]["age"], rows[1]["age_given"], rows[1]["sex_given"], rows[1]["clinical_source"]) == (
        43.0, True, True, "typed")
    doc = json.loads(patient_report_json(rows))
    assert set(doc["mask_notes"]) == {"model", "corrected"}
    table = list(csv.DictReader(io.StringIO(patient_report_csv(rows).decode())))
    assert tuple(table[0]) == PATIENT_COLUMNS and table[1]["mask"] == "corrected" and table[1]["edited_slices"] == "3"
    assert clinical_fields(None) == dict.fromkeys(("age", "age_given", "sex", "sex_given", "clinical_source"))
