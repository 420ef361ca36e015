"""The grade's out-of-fold estimate and its calibration: pooled from fold runs, cross-fitted where it is reported,
and refused whenever a prediction, a baseline or a calibration could have seen the patient it is scored on."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from lggdemo.crossval import main
from lggdemo.data.kaggle import scan_dataset
from lggdemo.evaluation.crossval import CrossValError
from lggdemo.evaluation.grade_oof import pool_grade_folds, record_grade
from lggdemo.inference.grade import grade_verdict, patient_grade
from lggdemo.metrics.grade import age_baseline_probs, fit_platt
from lggdemo.models.weights import load_card, read_card
from lggdemo.train import TrainConfig, run

N_BOOT = 100  # bootstrap resamples per AUC interval here: the intervals' own code is tested in tests/metrics
RECIPE = {"grade_image_size": 64, "grade_epochs": 8, "grade_samples": 768, "batch_size": 16, "lr": 1e-3,
          "precision": "bf16", "grade_init": "segmentation"}


def fold_cards(k: int = 3, per_fold: int = 12, seed: int = 0) -> list[dict]:
    """k made-up fold cards: every patient held out once, a logit that carries some signal, age that carries less."""
    rng = np.random.default_rng(seed)
    patients = [f"P{i:03d}" for i in range(k * per_fold)]
    folds = [patients[i::k] for i in range(k)]
    labels = {p: int(i % 2) for i, p in enumerate(patients)}
    cards = []
    for i, val in enumerate(folds):
        train = [p for p in patients if p not in val]
        logit = {p: float(rng.normal(0.8 * (2 * labels[p] - 1), 1.0)) for p in val}
        cards.append({
            "train_config": {**RECIPE, "preset": "bundled"},
            "split": {"fold": i, "folds": k, "seed": 0, "train": train, "val": val},
            "segmentation": {"trained_in_this_run": False, "copied_from": f"cv/f{i}"},
            "grade": {"trained_in_this_run": True, "validation_masks": "predicted by the segmentation model",
                      "per_patient_logit": logit, "per_patient_p_g3": {p: float(1 / (1 + np.exp(-z))) for p, z in logit.items()},
                      "labels": {p: labels[p] for p in val},
                      "per_patient_age_p_g3": {p: float(rng.uniform(0.3, 0.7)) for p in val},
                      "base_rate_g3": {"value": float(np.mean([labels[p] for p in train])), "n": len(train), "n_g3": 0}},
        })
    return cards


def test_pooled_numbers_are_sklearns_on_every_graded_patient_once() -> None:
    cards = fold_cards()
    result = pool_grade_folds(cards, n_boot=N_BOOT)
    oof = result["out_of_fold"]
    pp = oof["per_patient"]
    assert oof["n"] == len(pp) == 36 and sorted(pp) == sorted(p for c in cards for p in c["split"]["val"])
    y = [pp[p]["g3"] for p in pp]
    assert oof["model"]["auc"]["value"] == pytest.approx(roc_auc_score(y, [pp[p]["p_g3"] for p in pp]))
    assert oof["age_only"]["auc"]["value"] == pytest.approx(roc_auc_score(y, [pp[p]["age_p_g3"] for p in pp]))
    lo, hi = oof["model"]["auc"]["ci95"]
    assert lo < oof["model"]["auc"]["value"] < hi
    assert sum(b["n"] for b in oof["model"]["reliability_bins"]) == 36
    platt = fit_platt([pp[p]["logit"] for p in pp], y)  # the app's calibration: every out-of-fold prediction
    cal = result["calibration"]
    assert (cal["a"], cal["b"], cal["n"]) == pytest.approx((platt.a, platt.b, 36))
    assert oof["base_rate_cross_fitted"]["values"] == [c["grade"]["base_rate_g3"]["value"] for c in cards]


def test_calibrated_numbers_are_cross_fitted_never_fitted_on_the_patients_they_score() -> None:
    """Perturb one fold's labels: its own calibrated predictions must not move (its Platt never saw them), while
    the other folds' do (theirs did) and so does the app's Platt, fitted on everyone."""
    cards = fold_cards()
    before = pool_grade_folds(cards, n_boot=N_BOOT)
    flipped = copy.deepcopy(cards)
    flipped[0]["grade"]["labels"] = {p: 1 - y for p, y in flipped[0]["grade"]["labels"].items()}
    after = pool_grade_folds(flipped, n_boot=N_BOOT)
    b, a = before["out_of_fold"]["per_patient"], after["out_of_fold"]["per_patient"]
    own = cards[0]["split"]["val"]
    others = [p for p in b if p not in own]
    assert all(a[p]["calibrated_p_g3"] == pytest.approx(b[p]["calibrated_p_g3"], abs=1e-12) for p in own)
    assert max(abs(a[p]["calibrated_p_g3"] - b[p]["calibrated_p_g3"]) for p in others) > 1e-3
    assert after["calibration"]["a"] != pytest.approx(before["calibration"]["a"])


def test_folds_that_could_have_seen_their_patients_are_refused() -> None:
    cards = fold_cards()
    leaky = copy.deepcopy(cards)
    stranger = leaky[0]["split"]["train"][0]
    for key in ("per_patient_logit", "per_patient_p_g3", "per_patient_age_p_g3"):
        leaky[0]["grade"][key][stranger] = 0.5
    leaky[0]["grade"]["labels"][stranger] = 1
    with pytest.raises(CrossValError, match="outside its held-out fold"):
        pool_grade_folds(leaky)
    truth = copy.deepcopy(cards)
    truth[1]["grade"]["validation_masks"] = "ground truth"
    with pytest.raises(CrossValError, match="ground-truth masks"):
        pool_grade_folds(truth)
    foreign = copy.deepcopy(cards)
    foreign[2]["segmentation"]["held_out_metrics"] = "withheld: copied from a model trained on another patient split"
    with pytest.raises(CrossValError, match="not all trained on this fold"):
        pool_grade_folds(foreign)
    no_age = copy.deepcopy(cards)
    del no_age[0]["grade"]["per_patient_age_p_g3"]
    with pytest.raises(CrossValError, match="age-only"):
        pool_grade_folds(no_age)
    mixed = copy.deepcopy(cards)
    mixed[1]["train_config"]["grade_epochs"] = 2
    with pytest.raises(CrossValError, match="different recipes"):
        pool_grade_folds(mixed)
    with pytest.raises(CrossValError, match="missing fold"):
        pool_grade_folds(cards[:2])


@pytest.fixture(scope="module")
def grade_folds(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Both models of the quick recipe, tiny, once per fold of a 2-fold partition (``--task all --fold I/2``)."""
    base = tmp_path_factory.mktemp("grade-cv")
    tiny = dict(image_size=32, grade_image_size=32, seg_epochs=1, grade_epochs=1, seg_samples=16, grade_samples=16,
                batch_size=8, folds=0, threads=1, flip_tta=False, epoch_validation=False)
    outs = []
    for i in range(2):
        outs.append(base / f"f{i}")
        run(TrainConfig.from_preset("quick", data=str(synthetic_root), out=str(outs[-1]), fold=(i, 2), **tiny))
    return outs


@pytest.mark.slow  # real (tiny) training runs
def test_trainer_fold_runs_pool_and_their_calibration_reaches_the_shown_grade(grade_folds: list[Path], synthetic_root: Path,
                                                                               tmp_path: Path) -> None:
    index = scan_dataset(synthetic_root)
    for d in grade_folds:  # the age-only baseline of each fold saw only that fold's training patients
        card = read_card(d)
        graded = [p for p in card["split"]["train"] if index.clinical_for(p).grade]
        val = list(card["grade"]["per_patient_age_p_g3"])
        expect = age_baseline_probs([index.clinical_for(p).age for p in graded],
                                    [int(index.clinical_for(p).grade == "G3") for p in graded],
                                    [index.clinical_for(p).age for p in val])
        assert list(card["grade"]["per_patient_age_p_g3"].values()) == pytest.approx(list(expect))
        assert set(card["grade"]["per_patient_logit"]) == set(card["grade"]["per_patient_p_g3"]) <= set(card["split"]["val"])
    graded = {p for p in index.patient_ids if index.clinical_for(p).grade}
    out = tmp_path / "oof.json"
    assert main(["--grade", *map(str, grade_folds), "--json", str(out), "--record-in", str(grade_folds[0]),
                 "--n-boot", str(N_BOOT)]) == 0
    card = load_card(grade_folds[0])
    assert set(card.grade.out_of_fold["per_patient"]) == graded
    assert card.grade.out_of_fold["runs"] == list(map(str, grade_folds))  # by fold, as named: the card's provenance
    assert card.grade.out_of_fold["n_boot"] == N_BOOT  # with the runs, what it takes to recompute the block
    cal = card.grade.data["calibration"]
    verdict = grade_verdict(card)
    assert verdict.out_of_fold and verdict.auc.value == card.grade.out_of_fold["model"]["auc"]["value"]
    if verdict.informative:  # an untrained tiny model rarely is; the calibrated number is checked in test_grade.py
        g = patient_grade(card, np.array([0.3]), np.array([100]))
        assert g.shown_p_g3 == pytest.approx(1 / (1 + np.exp(-(cal["a"] * 0.3 + cal["b"]))))


@pytest.mark.slow  # real (tiny) training runs
def test_calibration_is_recorded_only_beside_the_folds_grade_recipe(grade_folds: list[Path], tmp_path: Path) -> None:
    pooled = pool_grade_folds([load_card(d) for d in grade_folds], n_boot=N_BOOT)
    other = tmp_path / "other"
    shutil.copytree(grade_folds[1], other)
    card = read_card(other)
    card["train_config"]["grade_epochs"] = 5
    (other / "model_card.json").write_text(json.dumps(card))
    before = (other / "model_card.json").read_bytes()
    with pytest.raises(CrossValError, match="another recipe"):
        record_grade(other, pooled)
    assert (other / "model_card.json").read_bytes() == before
