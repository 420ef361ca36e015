"""The patient-level grade: :class:`PatientGrade`, the one place the grade the page shows is decided.

Slices, whole patients, the CLI and the reports all build their grade with :func:`patient_grade`, and
read what they may state from it (``shown_p_g3``), so no two paths can disagree.

Whether the grade model's P(G3) may be shown, and what to show instead, is decided from its model card.

A clinician reads the bar, not the caveat beside it. The rule written before the calibration was measured
(docs/experiments/selection-rule.txt, entry of 2026-11-28 15:35; outcome in
docs/experiments/grade-platt-val15-new12.json) says that when the shipped grade model cannot be shown to
beat chance, the app shows the cohort's base rate and says so, *instead of* the model's number. The
criterion, read from any card: the grade AUC on the card's validation patients must have a 95% interval
entirely above 0.5. A card without that AUC or its interval has not shown it either.

When the number is withheld, the model's output stays available as a *raw score* (reports carry it as
``raw_score``; the page shows it only in a collapsed expander): it is a sigmoid output, not a calibrated
probability. The base rate is the G3 fraction among the card's graded *training* patients (recorded in the
card as ``grade.base_rate_g3`` by the trainer), never among the patients the model is scored on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lggdemo.models.card import CardMetric, ModelCard, card_metric
from lggdemo.models.networks import patient_logit

#: An AUC interval that reaches this value does not exclude a model that ranks patients at random.
CHANCE_AUC = 0.5
#: Where a card's ``grade.base_rate_g3`` comes from.
BASE_RATE_SOURCE = "data.csv grades of the card's training patients"
#: The label of the expander that holds the withheld number.
RAW_SCORE_LABEL = "Raw model score (not a calibrated probability)"


@dataclass(frozen=True)
class BaseRate:
    """The G3 fraction of a set of graded patients."""

    value: float
    n: int  # graded patients
    n_g3: int

    def to_dict(self, source: str) -> dict[str, Any]:
        return {"value": self.value, "n": self.n, "n_g3": self.n_g3, "source": source}


@dataclass(frozen=True)
class GradeVerdict:
    """What the page and the reports may say about one card's grade model."""

    informative: bool  # True: the model's P(G3) may be shown
    auc: CardMetric | None
    base_rate: BaseRate | None
    sentence: str  # why the number is withheld, with the base rate ("" when informative)


def base_rate_g3(grades: Mapping[str, str | None], patients: Sequence[str]) -> BaseRate | None:
    """G3 fraction among ``patients`` with a recorded grade (``grades``: patient -> "G2"/"G3"/None)."""
    graded = [grades.get(p) for p in patients if grades.get(p) in ("G2", "G3")]
    if not graded:
        return None
    n_g3 = sum(g == "G3" for g in graded)
    return BaseRate(n_g3 / len(graded), len(graded), n_g3)


def card_base_rate(card: ModelCard | dict[str, Any] | None) -> BaseRate | None:
    try:
        entry = (card if isinstance(card, ModelCard) else ModelCard.from_dict(card or {})).grade.data.get("base_rate_g3")
        return BaseRate(float(entry["value"]), int(entry["n"]), int(entry["n_g3"])) if isinstance(entry, Mapping) else None
    except (KeyError, TypeError, ValueError):
        return None


def grade_verdict(card: ModelCard | dict[str, Any] | None) -> GradeVerdict:
    """Informative only when the card's grade AUC has a 95% interval entirely above chance (0.5)."""
    auc = card_metric(card, "grade", "auc")
    rate = card_base_rate(card)
    if auc is not None and auc.ci95 is not None and auc.ci95[0] > CHANCE_AUC:
        return GradeVerdict(True, auc, rate, "")
    if auc is not None and auc.ci95 is not None:
        why = (f"On patients it had not seen, this grade model did no better than chance (AUC {auc.value:.2f}, "
               f"95% CI {auc.ci95[0]:.2f}–{auc.ci95[1]:.2f}), so no per-patient probability is shown.")
    else:
        why = ("This grade model's card records no AUC with an interval on patients it had not seen, so no "
               "per-patient probability is shown.")
    if rate is not None:
        why += (f" In this cohort, {rate.value:.0%} of patients are grade III ({rate.n_g3} of the model's "
                f"{rate.n} graded training patients).")
    return GradeVerdict(False, auc, rate, why)


#: Said wherever a patient-level P(G3) is shown or written: what the number is and is not.
GRADE_CAVEAT = ("P(G3) is the model's sigmoid output, not a calibrated probability: compare the model card's grade AUC "
                "with its age-only baseline (and their wide intervals) before reading anything into it. When the card's "
                "grade AUC interval reaches 0.5 (lggdemo.inference.grade), p_g3 is null and raw_score holds that output. "
                "Not a diagnosis.")
NO_TUMOUR_NOTE = "No tumour was found on any slice: the grade comes from whole slices and means little."
NOT_COMPUTED_NOTE = "Grade not computed: the clinical fields were not accepted."


def sigmoid(x: np.ndarray | float) -> np.ndarray | float:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


@dataclass(frozen=True)
class PatientGrade:
    """One patient's grade: what the model computed and what a page or report may state.

    ``logit`` is the area-weighted mean of the slice logits (``None``: not computed); ``withheld`` is the
    sentence that replaces the number when the card has not shown the model beats chance; ``note`` says
    why there is no grade or what it rests on.
    """

    logit: float | None
    withheld: str | None = None
    note: str | None = None

    @property
    def raw_score(self) -> float | None:
        """The model's sigmoid output: not a calibrated probability."""
        return None if self.logit is None else float(sigmoid(self.logit))

    @property
    def shown_p_g3(self) -> float | None:
        """P(G3) as the page and the reports may state it: ``None`` when withheld or not computed."""
        return None if self.withheld else self.raw_score

    @property
    def text(self) -> str | None:
        """Everything a reader needs next to the number, in one sentence or none."""
        return " ".join(n for n in (self.withheld, self.note) if n) or None


def patient_grade(card: ModelCard | dict[str, Any] | None, slice_logits: np.ndarray | None,
                  tumour_areas: np.ndarray) -> PatientGrade:
    """The grade of one patient from its graded slices (``None``: the clinical fields were refused).

    ``tumour_areas`` are the predicted tumour pixels of the graded slices, which weight their logits.
    """
    if slice_logits is None:
        return PatientGrade(None, None, NOT_COMPUTED_NOTE)
    verdict = grade_verdict(card)
    areas = np.asarray(tumour_areas)
    return PatientGrade(patient_logit(slice_logits, areas), None if verdict.informative else verdict.sentence,
                        NO_TUMOUR_NOTE if areas.sum() == 0 else None)
