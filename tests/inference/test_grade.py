"""The rule that decides whether the grade model's P(G3) is shown: its AUC interval must lie above chance."""

from __future__ import annotations

import pytest

from lggdemo.inference.grade import base_rate_g3, grade_verdict


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
