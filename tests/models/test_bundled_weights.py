"""The weights the app ships: they load offline, and their card's numbers hold on the card's own
validation patients (recomputed here from ../shared/lgg, never from numbers stored in the card)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lggdemo.data.arrays import slice_arrays
from lggdemo.data.kaggle import scan_dataset
from lggdemo.evaluation.crossval import same_recipe, seg_recipe
from lggdemo.evaluation.evaluate import evaluate_grade
from lggdemo.inference.grade import base_rate_g3, grade_verdict
from lggdemo.metrics.segmentation import evaluate_segmentation
from lggdemo.models.forward import predict_patient_masks
from lggdemo.models.postprocess import patient_rule_text
from lggdemo.models.weights import BUNDLED_DIR, GRADE_FILE, SEG_FILE, is_complete, load_grade, load_segmentation, read_card

TOLERANCE = 0.02
MATERIALIZE = Path(__file__).resolve().parents[3] / "shared" / "lgg" / "materialize.py"


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


def test_no_card_metric_uses_a_training_patient(card: dict) -> None:
    train, val = set(card["split"]["train"]), set(card["split"]["val"])
    assert train and val and not train & val
    scored_seg = set(card["segmentation"]["per_patient_dice"])
    scored_grade = set(card["grade"]["per_patient_p_g3"])
    assert scored_seg and not scored_seg & train
    assert scored_grade and not scored_grade & train
    assert card["segmentation"]["metrics"]["per_volume_dice_mean"]["n"] == len(scored_seg)
    assert card["grade"]["metrics"]["auc"]["n"] == len(scored_grade)


def test_cross_validated_estimate_scores_each_patient_once_by_a_model_that_never_saw_it(card: dict) -> None:
    cv = card["segmentation"].get("cross_validation")
    assert cv is not None, "weights/README.md quotes the recipe's cross-validated estimate: record it with lggdemo.crossval"
    assert same_recipe(cv["recipe"], seg_recipe(card))  # an estimate of how *these* weights were trained
    held_out = [set(f["val"]) for f in cv["folds"]]
    assert sum(map(len, held_out)) == len(set().union(*held_out))  # folds are disjoint
    scored: list[float] = []
    for fold in cv["folds"]:
        assert set(fold["per_patient_dice"]) <= set(fold["val"])
        assert not set(fold["per_patient_dice"]) & set(fold["train"])
        scored += fold["per_patient_dice"].values()
    pooled = cv["metrics"]["per_volume_dice_mean"]
    assert pooled["n"] == len(scored) == len(set().union(*held_out))
    assert pooled["value"] == pytest.approx(sum(scored) / len(scored))


@pytest.fixture(scope="module")
def real_all(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not MATERIALIZE.is_file():
        pytest.skip(f"real LGG data not available ({MATERIALIZE} missing)")
    dest = tmp_path_factory.mktemp("real-all")
    subprocess.run([sys.executable, str(MATERIALIZE), str(dest)], check=True, capture_output=True)
    return dest / "kaggle_3m"


@pytest.mark.real_data
def test_card_metrics_hold_on_its_validation_patients(card: dict, real_all: Path) -> None:
    index = scan_dataset(real_all)
    val = [p for p in card["split"]["val"] if p in index.patients]
    if len(val) < len(card["split"]["val"]):
        pytest.skip("../shared/lgg lacks some of the card's validation patients")
    sub = slice_arrays(dataclasses.replace(index, patients={p: index.patients[p] for p in val}), 256)

    device = torch.device("cpu")
    seg, seg_cfg = load_segmentation(BUNDLED_DIR, device)
    pred = predict_patient_masks(seg, seg_cfg, sub.images, sub.patient_ids, device)  # what the whole-patient app shows
    seg_eval = evaluate_segmentation(pred, sub.masks, sub.patient_ids)
    for name in ("per_volume_dice_mean", "tumour_slice_dice"):
        assert seg_eval.metrics[name].value >= card["segmentation"]["metrics"][name]["value"] - TOLERANCE, name
    grade, grade_cfg = load_grade(BUNDLED_DIR, device)
    g = evaluate_grade(grade, grade_cfg, sub, pred, index, val, device)
    assert g.metrics["auc"].value >= card["grade"]["metrics"]["auc"]["value"] - TOLERANCE
    train = card["split"]["train"]
    rate = base_rate_g3({p: index.clinical_for(p).grade for p in train if p in index.patients}, train)
    assert rate is not None and rate.value == pytest.approx(card["grade"]["base_rate_g3"]["value"])
    assert rate.n == card["grade"]["base_rate_g3"]["n"]


def test_card_names_its_post_processing_and_withholds_the_grade(card: dict) -> None:
    """The card's masks are the whole-patient rule's; its CV block predates the rule and says so; its grade
    AUC interval reaches 0.5, so the app shows the base rate instead of the model's P(G3)."""
    assert card["segmentation"]["postprocess"] == patient_rule_text(card["segmentation"]["config"]["min_component_px"])
    assert "2D rule only" in card["segmentation"]["cross_validation"]["note"]
    assert set(card["grade"]["metrics"]) >= {"auc", "accuracy", "balanced_accuracy", "age_baseline_auc"}
    verdict = grade_verdict(card)
    assert not verdict.informative and verdict.base_rate is not None
    assert f"{verdict.base_rate.value:.0%} of patients are grade III" in verdict.sentence
