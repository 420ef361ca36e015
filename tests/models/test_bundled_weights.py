"""The weights the app ships: they load offline, and their card's estimates are what they claim to be.

The shipped models train on every patient (the `bundled` preset), so their card holds no held-out numbers of its
own: its estimates are the 3-fold cross-validation of the same recipe (masks) and the same folds' out-of-fold
P(G3) (grade). These tests check that each estimate belongs to these weights' recipe, scores every patient once by
a model that never saw it, and that what the app states follows from it; on the real data, that the card describes
the data at hand and the shipped U-Net does at least as well on its own training patients as their folds did.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lggdemo.data.arrays import slice_arrays
from lggdemo.data.kaggle import scan_dataset
from lggdemo.evaluation.crossval import same_recipe, seg_recipe
from lggdemo.evaluation.grade_oof import grade_recipe
from lggdemo.inference.grade import grade_verdict
from lggdemo.metrics.segmentation import evaluate_segmentation
from lggdemo.models.card import ModelCard
from lggdemo.models.forward import predict_patient_masks
from lggdemo.models.postprocess import patient_rule_text
from lggdemo.models.weights import BUNDLED_DIR, GRADE_FILE, SEG_FILE, is_complete, load_grade, load_segmentation, read_card
from lggdemo.train.publish import data_fingerprint

TOLERANCE = 0.02


@pytest.fixture(scope="module")
def card() -> dict:
    return read_card(BUNDLED_DIR)


def test_bundled_weights_are_complete_and_load_offline(card: dict) -> None:
    assert is_complete(BUNDLED_DIR), "weights/ must hold both models with hashes matching model_card.json"
    seg, seg_cfg = load_segmentation(BUNDLED_DIR)
    grade, grade_cfg = load_grade(BUNDLED_DIR)
    assert seg_cfg.encoder == card["segmentation"]["config"]["encoder"]
    assert grade_cfg.image_size == card["grade"]["config"]["image_size"]
    size_mb = sum((BUNDLED_DIR / f).stat().st_size for f in (SEG_FILE, GRADE_FILE)) / 2**20
    assert size_mb <= 100


def test_the_shipped_models_trained_on_every_patient_by_the_bundled_preset(card: dict) -> None:
    """One command made them (issue 21): both models, all patients of the data, no validation split."""
    assert card["train_config"]["preset"] == "bundled" and card["train_config"]["task"] == "all"
    assert card["split"]["val"] == [] and len(card["split"]["train"]) == card["data"]["n_patients"]
    assert card["segmentation"]["trained_in_this_run"] and card["grade"]["trained_in_this_run"]
    assert card["segmentation"]["initialised_from"]["in_process"]  # both U-Net stages in the same run
    for section in ("segmentation", "grade"):
        assert not card[section].get("metrics") and "cross-validation" in card[section]["held_out_metrics"]
    assert card["training_seconds"] > 0 and card["segmentation"]["images_per_second"] > 0


def test_mask_estimate_scores_each_patient_once_by_a_fold_model_of_this_recipe(card: dict) -> None:
    cv = card["segmentation"]["cross_validation"]
    assert same_recipe(cv["recipe"], seg_recipe(card))  # an estimate of how *these* weights were trained
    assert cv["postprocess"] == card["segmentation"]["postprocess"] == \
        patient_rule_text(card["segmentation"]["config"]["min_component_px"])  # the masks the app shows
    held_out = [set(f["val"]) for f in cv["folds"]]
    assert sum(map(len, held_out)) == len(set().union(*held_out))  # folds are disjoint
    assert set().union(*held_out) == set(card["split"]["train"])  # ... and cover the shipped model's patients
    scored: list[float] = []
    for fold in cv["folds"]:
        assert set(fold["per_patient_dice"]) == set(fold["val"]) and not set(fold["val"]) & set(fold["train"])
        scored += fold["per_patient_dice"].values()
    pooled = cv["metrics"]["per_volume_dice_mean"]
    assert pooled["n"] == len(scored) == len(card["split"]["train"])
    assert pooled["value"] == pytest.approx(np.mean(scored))
    assert pooled["ci95"][0] < pooled["value"] < pooled["ci95"][1]
    assert cv["tumour_slice_dice_by_area"]  # the small-tumour bins the README quotes


def test_grade_estimate_and_calibration_are_out_of_fold_and_decide_what_the_app_shows(card: dict) -> None:
    grade = card["grade"]
    oof = grade["out_of_fold"]
    assert oof["recipe"] == grade_recipe(card)
    fold_of = {p: i for i, f in enumerate(card["segmentation"]["cross_validation"]["folds"]) for p in f["val"]}
    per = oof["per_patient"]
    assert oof["n"] == len(per) and set(per) <= set(card["split"]["train"])
    assert all(row["fold"] == fold_of[p] for p, row in per.items())  # the same folds as the masks' estimate
    assert oof["n_g3"] == sum(row["g3"] for row in per.values())
    # the base rate the app falls back on is the G3 fraction of the same graded patients
    assert grade["base_rate_g3"]["n"] == oof["n"] and grade["base_rate_g3"]["n_g3"] == oof["n_g3"]
    assert str(oof["n"]) in grade["calibration"]["fitted_on"]
    lo = oof["model"]["auc"]["ci95"][0]
    verdict = grade_verdict(card)
    assert verdict.out_of_fold and verdict.informative == (lo > 0.5)
    if not verdict.informative:
        assert f"{grade['base_rate_g3']['value']:.0%} of patients are grade III" in verdict.sentence


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
@pytest.mark.real_data
def test_card_describes_the_data_and_the_unet_holds_its_fold_scores(card: dict, real_root: Path) -> None:
    """The shipped U-Net trained on these patients, so it must do at least as well on them as the fold models that
    never saw them (less a tolerance): a check that the shipped file is the recipe's model, not the card's numbers."""
    index = scan_dataset(real_root)
    shipped = card["data"]["patient_sha256"]
    assert {p: shipped.get(p) for p in index.patients} == data_fingerprint(index)["patient_sha256"]
    sub = slice_arrays(index, 256)
    device = torch.device("cpu")
    seg, seg_cfg = load_segmentation(BUNDLED_DIR, device)
    pred = predict_patient_masks(seg, seg_cfg, sub.images, sub.patient_ids, device)  # what the whole-patient app shows
    shipped_dice = evaluate_segmentation(pred, sub.masks, sub.patient_ids).metrics["per_volume_dice_mean"].value
    held_out = ModelCard.from_dict(card).segmentation.cross_validated_dice
    assert shipped_dice >= np.mean([held_out[p] for p in index.patients]) - TOLERANCE
