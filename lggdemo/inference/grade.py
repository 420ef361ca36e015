"""The patient-level grade: :class:`PatientGrade`, the one place the grade the page shows is decided.

Slices, whole patients, the CLIs (predict, evaluate) and the reports all build their grade with
:func:`patient_grade`, and read what they may state from it (``shown_p_g3``), so no two paths can disagree.

Whether the grade model's P(G3) may be shown, and what to show instead, is decided from its model card.

A clinician reads the bar, not the caveat beside it. The rule (docs/experiments/selection-rule.txt, entries of
2026-11-28 15:35 and 2026-12-02 01:20): the model's number is shown only when its grade AUC has a 95% interval
entirely above 0.5; otherwise the app shows the cohort's base rate and says so, *instead of* the model's
number. The AUC read is the pooled out-of-fold one when the card records it (``grade.out_of_fold``, every
graded patient of a k-fold cross-validation of the recipe, ``lggdemo-crossval --grade``), else the
AUC on the card's validation patients. A card with neither has not shown it either.

When shown by the out-of-fold rule, the number is the Platt-calibrated P(G3) (``grade.calibration``, fitted on
those out-of-fold predictions only). When withheld, the model's output stays available as a *raw score*
(reports carry it as ``raw_score``; the page shows it only in a collapsed expander): it is a sigmoid output,
not a calibrated probability. The base rate is the G3 fraction among the card's graded *training* patients
(recorded in the card as ``grade.base_rate_g3`` by the trainer), never among the patients the model is scored on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lggdemo.metrics.calibration import Platt
from lggdemo.models.card import CardError, CardMetric, ModelCard, card_metric
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
    auc: CardMetric | None  # the AUC the decision rests on
    base_rate: BaseRate | None
    sentence: str  # why the number is withheld, with the base rate ("" when informative)
    calibration: Platt | None = None  # applied to the shown number (recorded beside an out-of-fold AUC only)
    out_of_fold: bool = False  # True: ``auc`` is the pooled out-of-fold AUC, else the validation patients'
    reason: str = ""  # one sentence: why a number is or is not shown (the Train page's, under the reliability diagram)


def base_rate_g3(grades: Mapping[str, str | None], patients: Sequence[str]) -> BaseRate | None:
    """G3 fraction among ``patients`` with a recorded grade (``grades``: patient -> "G2"/"G3"/None)."""
    graded = [grades.get(p) for p in patients if grades.get(p) in ("G2", "G3")]
    if not graded:
        return None
    n_g3 = sum(g == "G3" for g in graded)
    return BaseRate(n_g3 / len(graded), len(graded), n_g3)


def _grade_section(card: ModelCard | dict[str, Any] | None) -> dict[str, Any]:
    try:
        return (card if isinstance(card, ModelCard) else ModelCard.from_dict(card or {})).grade.data
    except CardError:
        return {}


def card_base_rate(card: ModelCard | dict[str, Any] | None) -> BaseRate | None:
    """The G3 fraction of the card's training patients (``grade.base_rate_g3``), or None when not recorded."""
    try:
        entry = _grade_section(card).get("base_rate_g3")
        return BaseRate(float(entry["value"]), int(entry["n"]), int(entry["n_g3"])) if isinstance(entry, Mapping) else None
    except (KeyError, TypeError, ValueError):
        return None


def grade_verdict(card: ModelCard | dict[str, Any] | None) -> GradeVerdict:
    """Informative only when the card's grade AUC has a 95% interval entirely above chance (0.5).

    The out-of-fold AUC decides when the card records one (it rests on every graded patient of the recipe's
    cross-validation); otherwise the AUC on the card's validation patients, as before.
    """
    oof = card_metric(card, "grade", "auc", out_of_fold="model")
    auc = oof or card_metric(card, "grade", "auc")
    rate = card_base_rate(card)
    calibration = Platt.from_dict(_grade_section(card).get("calibration")) if oof is not None else None
    if auc is not None and auc.ci95 is not None and auc.ci95[0] > CHANCE_AUC:
        what = ("Platt-calibrated on those out-of-fold predictions" if calibration
                else "the model's uncalibrated output")
        where = "out-of-fold AUC" if oof is not None else "AUC on its validation patients"
        reason = f"A per-patient P(G3) is shown because the grade model's {where} ({auc.text()}) lies above chance; it is {what}."
        return GradeVerdict(True, auc, rate, "", calibration, oof is not None, reason)
    if oof is not None and oof.ci95 is not None:
        why = (f"Cross-validated on {oof.n or 'its'} graded patients, each scored by a model that never saw it, this "
               f"grade model did no better than chance (out-of-fold AUC {oof.value:.2f}, 95% CI {oof.ci95[0]:.2f}–"
               f"{oof.ci95[1]:.2f}), so no per-patient probability is shown.")
    elif auc is not None and auc.ci95 is not None:
        why = (f"On patients it had not seen, this grade model did no better than chance (AUC {auc.value:.2f}, "
               f"95% CI {auc.ci95[0]:.2f}–{auc.ci95[1]:.2f}), so no per-patient probability is shown.")
    else:
        why = ("This grade model's card records no AUC with an interval on patients it had not seen, so no "
               "per-patient probability is shown.")
    sentence = why
    if rate is not None:
        sentence += (f" In this cohort, {rate.value:.0%} of patients are grade III ({rate.n_g3} of the model's "
                     f"{rate.n} graded training patients).")
    return GradeVerdict(False, auc, rate, sentence, None, oof is not None, why)


@dataclass(frozen=True)
class GradeEvidence:
    """The grade AUC a page quotes beside the number and its age-alone comparator, from the same patients."""

    where: str  # "out of fold, 87 graded patients" | "the card's validation patients"
    auc: CardMetric | None
    age_only: CardMetric | None


def grade_evidence(card: ModelCard | dict[str, Any] | None) -> GradeEvidence:
    """The out-of-fold AUCs when the card records them (the ones :func:`grade_verdict` decides by), else the
    validation patients' ones."""
    oof = card_metric(card, "grade", "auc", out_of_fold="model")
    if oof is not None:
        return GradeEvidence(f"out of fold, {oof.n} graded patients" if oof.n else "out of fold", oof,
                             card_metric(card, "grade", "auc", out_of_fold="age_only"))
    return GradeEvidence("the card's validation patients", card_metric(card, "grade", "auc"),
                         card_metric(card, "grade", "age_baseline_auc"))


#: Said wherever a patient-level P(G3) is shown or written: what the number is and is not.
GRADE_CAVEAT = ("p_g3 is stated only when the card's grade AUC interval lies above 0.5 (the out-of-fold AUC when the "
                "card records one; lggdemo.inference.grade): then it is Platt-calibrated on the out-of-fold predictions "
                "(cards without a calibration: the model's sigmoid output). Otherwise p_g3 is null and raw_score holds "
                "the model's sigmoid output, which is not a calibrated probability. Not a diagnosis.")
NO_TUMOUR_NOTE = "No tumour was found on any slice: the grade comes from whole slices and means little."
NOT_COMPUTED_NOTE = "Grade not computed: the clinical fields were not accepted."


def sigmoid(x: np.ndarray | float) -> np.ndarray | float:
    """Logit(s) -> probability in (0, 1), float64, elementwise."""
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


@dataclass(frozen=True)
class PatientGrade:
    """One patient's grade: what the model computed and what a page or report may state.

    ``logit`` is the area-weighted mean of the slice logits (``None``: not computed); ``withheld`` is the
    sentence that replaces the number when the card has not shown the model beats chance; ``note`` says
    why there is no grade or what it rests on; ``calibration`` the card's Platt scaling, applied to the shown
    number; ``base_rate`` the G3 fraction the withheld sentence states instead.
    """

    logit: float | None
    withheld: str | None = None
    note: str | None = None
    calibration: Platt | None = None
    base_rate: float | None = None

    @property
    def raw_score(self) -> float | None:
        """The model's sigmoid output: not a calibrated probability."""
        return None if self.logit is None else float(sigmoid(self.logit))

    @property
    def shown_p_g3(self) -> float | None:
        """P(G3) as the page and the reports may state it: ``None`` when withheld or not computed."""
        if self.withheld or self.logit is None:
            return None
        return float(self.calibration.apply(self.logit)) if self.calibration else self.raw_score

    @property
    def stated_p_g3(self) -> float | None:
        """The probability a reader is given: ``shown_p_g3``, or the base rate the withheld sentence states.

        What ``lggdemo-evaluate`` scores against the truth, so anyone can check on their own patients
        that what the app says is never worse than the base rate.
        """
        if self.logit is None:
            return None
        return self.shown_p_g3 if not self.withheld else self.base_rate

    @property
    def stated_as(self) -> str | None:
        """What :attr:`stated_p_g3` is: ``"calibrated"``, ``"model"`` (uncalibrated), ``"base rate"`` or None."""
        if self.stated_p_g3 is None:
            return None
        return "base rate" if self.withheld else ("calibrated" if self.calibration else "model")

    @property
    def shows_slice_p_g3(self) -> bool:
        """Whether a slice's own P(G3) may be shown: only beside an uncalibrated patient number. The calibration
        is fitted on patient logits, so a slice's raw output next to a calibrated patient P(G3) would read as
        the same kind of number while it is not."""
        return not self.withheld and self.calibration is None and self.logit is not None

    @property
    def text(self) -> str | None:
        """Everything a reader needs next to the number, in one sentence or none."""
        return " ".join(n for n in (self.withheld, self.note) if n) or None


def patient_grade(card: ModelCard | dict[str, Any] | None, slice_logits: np.ndarray | None,
                  tumour_areas: np.ndarray) -> PatientGrade:
    """The grade of one patient from its graded slices (``None``: the clinical fields were refused).

    Args:
        card: the weights' model card: whether a number may be shown, its calibration, the base rate.
        slice_logits: (S,) G3 logits of the graded slices, or None.
        tumour_areas: (S,) predicted tumour pixels of the same slices, which weight their logits.

    Returns:
        The one :class:`PatientGrade` every page, CLI and report reads ``shown_p_g3`` from.
    """
    if slice_logits is None:
        return PatientGrade(None, None, NOT_COMPUTED_NOTE)
    verdict = grade_verdict(card)
    areas = np.asarray(tumour_areas)
    return PatientGrade(patient_logit(slice_logits, areas), None if verdict.informative else verdict.sentence,
                        NO_TUMOUR_NOTE if areas.sum() == 0 else None,
                        verdict.calibration if verdict.informative else None,
                        verdict.base_rate.value if verdict.base_rate else None)
