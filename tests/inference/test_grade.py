"""The rule that decides whether the grade model's P(G3) is shown: its AUC interval must lie above chance."""

from __future__ import annotations

import numpy as np
import pytest

from lggdemo.inference.grade import base_rate_g3, grade_evidence, grade_verdict, patient_grade


def _card(ci: list[float] | None, rate: dict | None = None) -> dict:
    grade: dict = {"metrics": {"auc": {"value": 0.63, "ci95": ci, "n": 15, "definition": "d"}}}
    if rate is not None:
        grade["base_rate_g3"] = rate
    return {"grade": grade}


def test_an_interval_reaching_chance_withholds_the_number_and_gives_the_base_rate() -> None:
    v = grade_verdict(_card([0.2857, 0.9320], {"value": 0.55, "n": 60, "n_g3": 33, "source": "s"}))
    assert not v.informative
    assert v.sentence == ("On patients it had not seen, this grade model did no better than chance (AUC 0.63, 95% CI "
                          "0.29–0.93), so no per-patient probability is shown. In this cohort, 55% of patients are "
                          "grade III (33 of the model's 60 graded training patients).")


@pytest.mark.parametrize(("ci", "informative"), [([0.51, 0.9], True), ([0.5, 0.9], False), ([0.1, 0.45], False),
                                                 (None, False)])
def test_criterion_is_the_lower_bound_above_one_half(ci: list[float] | None, informative: bool) -> None:
    v = grade_verdict(_card(ci))
    assert v.informative is informative
    assert (v.sentence == "") is informative
    assert "In this cohort" not in v.sentence  # no base rate recorded, none claimed


def test_cards_without_a_grade_auc_are_not_informative() -> None:
    for card in ({}, None, {"grade": {"metrics": {}}}, {"grade": {"metrics": {"auc": {"value": "x"}}}}):
        v = grade_verdict(card)
        assert not v.informative and "records no AUC" in v.sentence


def test_base_rate_counts_graded_patients_only() -> None:
    grades = {"a": "G3", "b": "G2", "c": None, "d": "G3", "e": "G3"}
    rate = base_rate_g3(grades, ["a", "b", "c", "d"])
    assert rate is not None and (rate.n, rate.n_g3) == (3, 2) and rate.value == pytest.approx(2 / 3)
    assert base_rate_g3(grades, ["c"]) is None


def _oof_card(oof_ci: list[float], val_ci: list[float] | None = None, calibration: dict | None = None) -> dict:
    card = _card(val_ci, {"value": 0.55, "n": 88, "n_g3": 48, "source": "s"})
    card["grade"]["out_of_fold"] = {"model": {"auc": {"value": 0.66, "ci95": oof_ci, "n": 87}},
                                    "age_only": {"auc": {"value": 0.52, "ci95": [0.4, 0.64], "n": 87}}}
    card["grade"]["calibration"] = calibration or {"a": 0.5, "b": -0.2, "n": 87}
    return card


def test_the_out_of_fold_interval_decides_over_the_validation_one() -> None:
    shown = grade_verdict(_oof_card([0.55, 0.77], val_ci=[0.3, 0.9]))
    assert shown.informative and shown.out_of_fold and shown.auc.value == 0.66
    assert shown.calibration is not None and (shown.calibration.a, shown.calibration.b) == (0.5, -0.2)
    assert "out-of-fold AUC" in shown.reason and "Platt-calibrated" in shown.reason
    withheld = grade_verdict(_oof_card([0.45, 0.77], val_ci=[0.6, 0.9]))
    assert not withheld.informative and withheld.calibration is None
    assert "out-of-fold AUC 0.66, 95% CI 0.45–0.77" in withheld.sentence and "87 graded patients" in withheld.sentence
    assert "In this cohort, 55%" in withheld.sentence and "In this cohort" not in withheld.reason
    assert grade_evidence(_oof_card([0.45, 0.77])).where == "out of fold, 87 graded patients"
    assert grade_evidence(_card([0.4, 0.9])).where == "the card's validation patients"


def test_shown_p_g3_is_the_calibrated_probability_and_the_base_rate_when_withheld() -> None:
    logits, areas = np.array([0.4, 1.2]), np.array([100, 300])
    z = float((0.4 * 100 + 1.2 * 300) / 400)  # area-weighted
    g = patient_grade(_oof_card([0.55, 0.77]), logits, areas)
    assert g.raw_score == pytest.approx(1 / (1 + np.exp(-z)))
    assert g.shown_p_g3 == pytest.approx(1 / (1 + np.exp(-(0.5 * z - 0.2))))
    assert (g.stated_p_g3, g.stated_as) == (g.shown_p_g3, "calibrated") and not g.shows_slice_p_g3
    w = patient_grade(_oof_card([0.45, 0.77]), logits, areas)
    assert w.shown_p_g3 is None and (w.stated_p_g3, w.stated_as) == (0.55, "base rate") and not w.shows_slice_p_g3
    old = patient_grade(_card([0.51, 0.9]), logits, areas)  # an older card, shown by the validation rule: uncalibrated
    assert old.shown_p_g3 == old.raw_score and old.stated_as == "model" and old.shows_slice_p_g3
    none = patient_grade(_oof_card([0.55, 0.77]), None, areas)
    assert none.shown_p_g3 is None and none.stated_p_g3 is None
