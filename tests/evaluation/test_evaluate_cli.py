"""The evaluate command line (``lggdemo-evaluate``) on the phantoms: every patient scored, the patients the weights
trained on named, one side of the card's split, and per patient the number the app would state."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lggdemo.data.kaggle import scan_dataset
from lggdemo.inference.grade import BASE_RATE_SOURCE, base_rate_g3, grade_verdict
from lggdemo.models.weights import read_card, write_card
from lggdemo.train.split import patient_split

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def split_weights(tiny_weights: Path, synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The untrained tiny weights, with a card that lists a patient split and its training patients' base rate, as a
    trained run's does: what the evaluator reads from a card, without training anything."""
    out = tmp_path_factory.mktemp("split-weights") / "weights"
    shutil.copytree(tiny_weights, out)
    index = scan_dataset(synthetic_root)
    split = patient_split(index, 0.25, seed=0)
    card = read_card(out)
    card["split"] = {"method": "patient-level, stratified by grade", "seed": 0, "train": list(split.train),
                     "val": list(split.val)}
    rate = base_rate_g3({p: index.clinical_for(p).grade for p in split.train}, split.train)
    assert rate is not None
    card["grade"]["base_rate_g3"] = rate.to_dict(BASE_RATE_SOURCE)
    write_card(out, card)
    return out


@pytest.mark.slow  # a subprocess scores every phantom patient, whole-patient masks and grades
def test_evaluate_cli_scores_any_dataset(split_weights: Path, synthetic_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    res = subprocess.run([sys.executable, "-m", "lggdemo.evaluate", "--data", str(synthetic_root), "--weights",
                          str(split_weights), "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    result = json.loads(out.read_text())
    index = scan_dataset(synthetic_root)
    per = result["segmentation"]["per_patient_dice"]
    assert set(per) == set(index.patient_ids)
    assert np.mean(list(per.values())) == pytest.approx(result["segmentation"]["metrics"]["per_volume_dice_mean"]["value"])
    assert "per_volume_dice_median" in res.stdout
    assert result["grade"]["metrics"]["auc"]["n"] == sum(index.clinical_for(p).grade is not None for p in index.patient_ids)
    assert result["trained_on"] == sorted(read_card(split_weights)["split"]["train"])  # named, and warned about
    assert f"{len(result['trained_on'])} of {len(per)} patients trained these weights" in res.stderr
    bins = result["segmentation"]["tumour_slice_dice_by_area"]
    assert sum(b["n"] for b in bins.values()) == result["segmentation"]["metrics"]["tumour_slice_dice"]["n"]
    # what the app would state per patient: this card withholds the number, so the base rate, beside the raw score
    card = read_card(split_weights)
    assert grade_verdict(card).informative is False
    shown = result["grade"]["shown"]
    for pid, row in shown["per_patient"].items():
        assert (row["shown_p_g3"], row["shown_as"]) == (card["grade"]["base_rate_g3"]["value"], "base rate")
        assert row["raw_score"] == pytest.approx(result["grade"]["per_patient_p_g3"][pid])
    assert shown["shown_p_g3"]["n"] == len(shown["per_patient"]) and "brier" in shown["raw_score"]
    assert shown["base_rate"]["brier"] == pytest.approx(shown["shown_p_g3"]["brier"])  # withheld: it *is* the base rate


@pytest.mark.slow  # a subprocess scores the validation side's phantoms, whole-patient masks and grades
def test_evaluate_cli_scores_one_side_of_the_split_and_writes_the_calibrated_probability(
        split_weights: Path, synthetic_root: Path, tmp_path: Path) -> None:
    weights = tmp_path / "calibrated"
    shutil.copytree(split_weights, weights)
    card = read_card(weights)
    card["grade"]["out_of_fold"] = {"model": {"auc": {"value": 0.8, "ci95": [0.7, 0.9], "n": 12}}}
    card["grade"]["calibration"] = {"a": 0.5, "b": -0.25, "n": 12}
    (weights / "model_card.json").write_text(json.dumps(card))
    out = tmp_path / "eval.json"
    res = subprocess.run([sys.executable, "-m", "lggdemo.evaluate", "--data", str(synthetic_root), "--weights",
                          str(weights), "--split", "val", "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    result = json.loads(out.read_text())
    # one side of the card's split, and none of it trained the weights
    assert set(result["segmentation"]["per_patient_dice"]) == set(card["split"]["val"])
    assert result["trained_on"] == [] and "trained these weights" not in res.stderr
    assert "true tumour" in res.stdout
    # the probability the app would state: the card's calibration applied to the raw score
    rows = result["grade"]["shown"]["per_patient"]
    assert rows
    for row in rows.values():
        logit = np.log(row["raw_score"] / (1 - row["raw_score"]))
        assert row["shown_as"] == "calibrated"
        assert row["shown_p_g3"] == pytest.approx(1 / (1 + np.exp(-(0.5 * logit - 0.25))), abs=1e-6)
    assert "what the app states" in res.stdout
