"""Whole-patient inference: the Predictor's steps, the 3D rule, tumour volume in mL and one P(G3) per patient."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from patient_files import dataset_patient, write_nifti_4d

from lggdemo.data.kaggle import Clinical
from lggdemo.inference.grade import sigmoid
from lggdemo.inference.predictor import Predictor
from lggdemo.inference.wholepatient import predict_volume
from lggdemo.models import forward
from lggdemo.models.networks import patient_logit
from lggdemo.models.postprocess import keep_main_components_3d
from lggdemo.patient.readers import open_path


@pytest.fixture(scope="module")
def predictor(tiny_weights: Path) -> Predictor:
    return Predictor.from_directory(tiny_weights, "cpu")


def test_volume_prediction_matches_the_predictor_steps(predictor: Predictor, synthetic_root: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    vol = open_path(write_nifti_4d(tmp_path / "p.nii.gz", dataset_patient(synthetic_root).slices)).volume()
    raw = np.zeros(vol.slices.shape[:3], np.uint8)
    raw[3:9, 100:140, 90:130] = 1  # the tumour
    raw[12, 10:13, 10:13] = 1  # a speck the 3D rule removes
    raw[3:9, 10:30, 10:30] = 1  # a separate focus of 25% of the tumour's voxels: removed too (largest only)
    real_segment = forward.segment_slices

    def fake_segment(*args: object, **kwargs: object) -> tuple[np.ndarray, np.ndarray | None]:
        _, probs = real_segment(*args, **kwargs)  # type: ignore[arg-type]
        return raw.copy(), probs  # the 2D step's masks: the rest of the path runs as it is

    monkeypatch.setattr(forward, "segment_slices", fake_segment)
    seen: list[float] = []
    clinical = Clinical(50.0, "male")
    res = predict_volume(predictor, vol, clinical, progress=lambda f, _m: seen.append(f))
    expected = keep_main_components_3d(raw)
    assert np.array_equal(res.mask, expected) and res.removed_voxels == 9 + 6 * 20 * 20
    assert res.removed is not None and np.array_equal(res.removed, raw - expected)  # drawn in the slice view
    assert res.tumour_voxels == 6 * 40 * 40 and res.tumour_slices == (4, 5, 6, 7, 8, 9)
    assert res.tumour_ml == pytest.approx(res.tumour_voxels * np.prod(vol.spacing) / 1000)
    # grading only the tumour slices gives the all-slice area-weighted number
    areas = expected.reshape(len(expected), -1).sum(1)
    full = predictor.grade(vol.slices, expected, clinical)
    assert res.grade.raw_score == pytest.approx(float(sigmoid(patient_logit(full, areas))), abs=1e-5)
    assert seen == sorted(seen) and seen[-1] == 1.0
    assert res.model_version == "tiny-test-1" and res.dice is None


def test_truth_gives_a_dice_and_no_clinical_gives_no_grade(predictor: Predictor, synthetic_root: Path) -> None:
    vol = dataset_patient(synthetic_root, 3)
    res = predict_volume(predictor, vol, None)
    assert res.grade.raw_score is None and "not accepted" in (res.grade.note or "")
    assert res.dice is not None and 0.0 <= res.dice <= 1.0 and res.truth_voxels == int(vol.truth.sum())
    assert res.tumour_ml is None  # the Kaggle layout has no spacing
    assert res.mask.shape == vol.slices.shape[:3] and res.probability.shape == vol.slices.shape[:3]


def test_the_shown_mask_is_the_one_the_evaluator_scores(predictor: Predictor, synthetic_root: Path) -> None:
    """One path: the mask a whole patient shows, its probability and what the 3D rule removed are those of
    models/forward -- predict_patient_masks, the function the evaluator and the trainer's validation score."""
    from lggdemo.models.forward import predict_patient_masks, segment_slices

    vol = dataset_patient(synthetic_root, 3)
    res = predict_volume(predictor, vol, None)
    ids = [vol.name] * vol.n_slices
    shown = predict_patient_masks(predictor.engine, predictor.seg_config, vol.slices, ids,
                                  batch_size=predictor.batch_size)
    assert np.array_equal(res.mask, shown)
    slice_masks, probs = segment_slices(predictor.engine, predictor.seg_config, vol.slices,
                                        batch_size=predictor.batch_size, probabilities=True)
    assert res.removed is not None and np.array_equal(res.removed, slice_masks & (1 - shown))
    assert res.removed_voxels == int(slice_masks.sum() - shown.sum())
    assert probs is not None and np.allclose(res.probability.astype(np.float32), probs, atol=1e-3)  # stored as float16
