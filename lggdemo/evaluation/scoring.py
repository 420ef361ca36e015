"""The one place held-out scores are computed: the evaluate CLI, cross-validation and the trainer all call it.

So a number in a model card, a pooled cross-validation and a user's own ``lggdemo-evaluate``
run mean the same thing, computed the same way:

- :func:`score_segmentation`: the masks the app's whole-patient mode shows (``models.forward.predict_patient_masks``)
  scored against the truth -- per-volume Dice per patient, its mean (bootstrap CI) and median, tumour-slice Dice,
  and tumour-slice Dice by true tumour area; :meth:`SegmentationScore.card_entry` is what a card keeps.
- :func:`segmentation_metrics` (``metrics.segmentation``'s, re-exported): those three metrics from per-patient
  Dice and a tumour-slice Dice -- the trainer's folds are pooled by ``crossval.pool_folds`` through it.
- :func:`evaluate_grade` / :func:`stated_grade_report`: per-patient P(G3) as the app states it, and its metrics.
- :func:`score_measurements`: per patient, the clinical measurements (``lggdemo.measure``) of the predicted and
  the true mask, their surface metrics, and for the cohort the agreement of volume, RANO-LGG product and
  measurability (median absolute % error, Bland–Altman, agreement rate).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lggdemo.data.arrays import SliceArrays
from lggdemo.data.kaggle import Clinical, DatasetIndex
from lggdemo.inference.grade import PatientGrade, patient_grade
from lggdemo.measure import Agreement, Measurements, agreement
from lggdemo.metrics.agreement import bland_altman, median_abs_pct_error
from lggdemo.metrics.bootstrap import mean_ci, median_ci
from lggdemo.metrics.definitions import Metric
from lggdemo.metrics.grade import brier, grade_metrics, log_loss_g3
from lggdemo.metrics.segmentation import SegEvaluation, evaluate_segmentation, segmentation_metrics, tumour_slice_dice_by_area
from lggdemo.models.card import ModelCard
from lggdemo.models.engine import Engine, as_engine
from lggdemo.models.forward import grade_slice_logits, predict_patient_masks
from lggdemo.models.networks import GradeConfig, GradeNet, SegConfig
from lggdemo.models.postprocess import patient_rule_text
from lggdemo.models.preprocess import head_pixels

# --- segmentation ----------------------------------------------------------------------------


@dataclass
class SegmentationScore:
    masks: np.ndarray  # (N, 256, 256) uint8: what the app would show for each slice
    evaluation: SegEvaluation
    by_area: dict[str, dict[str, float]]
    postprocess: str  # the whole-patient rule in words

    def card_entry(self) -> dict[str, Any]:
        """What a card's ``segmentation`` section keeps of a held-out scoring."""
        return {"tumour_slice_dice_by_area": self.by_area,
                "metrics": {k: m.to_dict() for k, m in self.evaluation.metrics.items()},
                "per_patient_dice": self.evaluation.per_patient}

    def curve(self) -> dict[str, float]:
        """The two numbers an epoch's validation curve records."""
        return {m: self.evaluation.metrics[m].value for m in ("per_volume_dice_mean", "tumour_slice_dice")}


def score_segmentation(model: torch.nn.Module | Engine, config: SegConfig, images: np.ndarray, truth: np.ndarray,
                       patient_ids: Sequence[str]) -> SegmentationScore:
    """(N, 256, 256, 3) uint8 slices and (N, 256, 256) true masks of patients (slices in slice order) -> the
    app's masks under the whole-patient rule and their scores."""
    pred = predict_patient_masks(model, config, images, patient_ids)
    return SegmentationScore(pred, evaluate_segmentation(pred, truth, patient_ids), tumour_slice_dice_by_area(pred, truth),
                             patient_rule_text(config.min_component_px))


__all__ = ["GradeEvaluation", "SegmentationScore", "evaluate_grade", "measurement_cohort", "patient_agreements",
           "patient_rows", "score_dataset", "score_measurements", "score_segmentation", "segmentation_metrics",
           "stated_grade_report"]


# --- grade -----------------------------------------------------------------------------------


@dataclass
class GradeEvaluation:
    per_patient: dict[str, float]  # the model's P(G3) (PatientGrade.raw_score)
    labels: dict[str, int]
    metrics: dict[str, Metric] = field(default_factory=dict)
    grades: dict[str, PatientGrade] = field(default_factory=dict)  # what the app would state, per patient

    @property
    def logits(self) -> dict[str, float]:
        return {p: float(g.logit) for p, g in self.grades.items() if g.logit is not None}


def evaluate_grade(model: GradeNet | Engine, config: GradeConfig, arrays: SliceArrays, masks_256: np.ndarray,
                   index: DatasetIndex, patients: Sequence[str], device: torch.device | None = None, seed: int = 0,
                   card: ModelCard | dict[str, Any] | None = None) -> GradeEvaluation:
    """Patient-level P(G3) for every patient with a recorded grade, and the metrics over them.

    ``model``: an engine (:mod:`lggdemo.models.engine`) or a bare grade network (run on the ``torch`` engine).
    Each patient's grade is the app's :class:`PatientGrade` (``patient_grade``, under ``card``'s rule): the raw
    score is what the metrics score, and ``grades`` says what the app would state for that patient.
    """
    grades, labels = {}, {}
    model = as_engine(model, device)
    for pid in patients:
        c = index.clinical_for(pid)
        if c.grade is None:
            continue
        sel = arrays.patient_ids == pid
        logits = grade_slice_logits(model, config, arrays.images[sel], masks_256[sel], Clinical(c.age, c.sex), device)
        grades[pid] = patient_grade(card, logits, masks_256[sel].reshape(sel.sum(), -1).sum(1))
        labels[pid] = int(c.grade == "G3")
    probs = {p: float(g.raw_score) for p, g in grades.items() if g.raw_score is not None}
    y, p = list(labels.values()), list(probs.values())
    return GradeEvaluation(probs, labels, grade_metrics(y, p, seed=seed) if y else {}, grades)


def stated_grade_report(grades: dict[str, PatientGrade], labels: dict[str, int]) -> dict[str, Any]:
    """Per patient, what the app would state (``shown_p_g3``: calibrated, model or base rate) beside ``raw_score``,
    and the Brier score and log loss of both: the check that what is shown is never worse than the base rate."""
    rows = {p: {"raw_score": g.raw_score, "shown_p_g3": g.stated_p_g3, "shown_as": g.stated_as, "g3": labels[p]}
            for p, g in grades.items()}
    out: dict[str, Any] = {"per_patient": rows}
    stated = [p for p, r in rows.items() if r["shown_p_g3"] is not None]
    if stated:
        y = [labels[p] for p in stated]
        for key in ("shown_p_g3", "raw_score"):
            probs = [rows[p][key] for p in stated]
            out[key] = {"brier": brier(y, probs), "log_loss": log_loss_g3(y, probs), "n": len(y)}
        rates = {grades[p].base_rate for p in stated}
        if len(rates) == 1 and None not in rates:  # the constant the app states when it withholds the number
            rate = rates.pop()
            out["base_rate"] = {"value": rate, "brier": brier(y, [rate] * len(y)),
                                "log_loss": log_loss_g3(y, [rate] * len(y)), "n": len(y)}
    return out


# --- clinical measurements -------------------------------------------------------------------

MEASUREMENT_DEFINITIONS = {
    "volume_pct_error": "(predicted - true) / true tumour volume x 100, per patient (undefined for an empty truth).",
    "product_pct_error": "the same for the RANO-LGG bidimensional product (an empty mask's product is 0).",
    "bland_altman": "Bland-Altman of predicted - true: bias (mean difference) and 95% limits of agreement "
                    "(bias +- 1.96 SD), in mL and mm² (voxels and px² without a spacing).",
    "measurable_agreement": "fraction of patients on whom the predicted and the true mask agree on 'measurable by "
                            "RANO-LGG' (both diameters >= 10 mm); needs a spacing.",
    "surface": "HD95, ASSD and surface Dice at 1 and 2 mm (lggdemo.metrics.surface, MONAI's); HD95 and ASSD are "
               "undefined when one mask is empty, and counted apart rather than averaged in.",
}


def _brief(m: Measurements) -> dict[str, Any]:
    return {"volume_voxels": m.volume_voxels, "volume_ml": m.volume_ml,
            "product_mm2": m.bidimensional_product_mm2, "product_px2": m.bidimensional_product_px2,
            "longest_mm": m.longest.length_mm if m.longest else None,
            "perpendicular_mm": m.perpendicular.length_mm if m.perpendicular else None,
            "measurable": m.measurable, "mean_diameter_mm": m.mean_diameter_mm, "lesions": m.lesions,
            "laterality": m.laterality}


def patient_agreements(pred: np.ndarray, truth: np.ndarray, patient_ids: Sequence[str],
                       spacing: tuple[float, float, float] | None, images: np.ndarray | None = None,
                       numbers: Sequence[int] | None = None) -> dict[str, Agreement]:
    """Per patient (slices stacked in slice order; ``numbers`` sorts them if given), the predicted mask's
    :class:`~lggdemo.measure.Agreement` with the truth; ``images`` (N, H, W, 3) give the head's midline."""
    ids = np.asarray(patient_ids)
    out = {}
    for pid in dict.fromkeys(ids.tolist()):
        sel = np.flatnonzero(ids == pid)
        if numbers is not None:
            sel = sel[np.argsort(np.asarray(numbers)[sel], kind="stable")]
        head = head_pixels(images[sel]) if images is not None else None
        out[pid] = agreement(pred[sel] > 0, truth[sel] > 0, spacing, head=head)
    return out


def patient_rows(per: Mapping[str, Agreement]) -> dict[str, dict[str, Any]]:
    """Each patient's agreement as the JSON keeps it: the surface metrics and % differences, and a brief of the
    predicted and the true mask's measurements (``prediction``, ``truth``)."""
    return {p: {**a.to_dict(), "prediction": _brief(a.prediction), "truth": _brief(a.reference)}
            for p, a in per.items()}


def _summary(values: list[float], seed: int) -> dict[str, Any]:
    if not values:
        return {"n": 0, "mean": None, "mean_ci95": None, "median": None, "median_ci95": None}
    return {"n": len(values), "mean": float(np.mean(values)), "mean_ci95": mean_ci(values, seed=seed),
            "median": float(np.median(values)), "median_ci95": median_ci(values, seed=seed)}


def measurement_cohort(rows: Mapping[str, Mapping[str, Any]], seed: int = 0) -> dict[str, Any]:
    """The cohort's agreement of volume, product and measurability, and its surface metrics (see
    ``MEASUREMENT_DEFINITIONS``), from :func:`patient_rows` -- of one run, or pooled over several (folds)."""
    rows = list(rows.values())
    known = bool(rows) and all(r["distance_units"] == "mm" for r in rows)

    def volume(m: Mapping[str, Any]) -> float:
        return float(m["volume_ml"]) if known else float(m["volume_voxels"])

    def product(m: Mapping[str, Any]) -> float:
        if not m["volume_voxels"]:
            return 0.0  # no lesion: nothing measured
        return float((m["product_mm2"] if known else m["product_px2"]) or 0.0)

    out: dict[str, Any] = {"n": len(rows), "units": {"volume": "mL" if known else "voxels",
                                                    "product": "mm²" if known else "px²",
                                                    "distance": "mm" if known else "voxels"}}
    for name, fn, key in (("volume", volume, "volume_diff_pct"), ("product", product, "product_diff_pct")):
        med, n = median_abs_pct_error([r[key] for r in rows])
        ba = bland_altman([fn(r["prediction"]) for r in rows], [fn(r["truth"]) for r in rows])
        out[name] = {"median_abs_pct_error": med, "n_pct": n, "bland_altman": ba.to_dict() if ba else None}
    if known:
        pairs = [(bool(r["prediction"]["measurable"]), bool(r["truth"]["measurable"])) for r in rows]
        out["measurable"] = {"agreement_rate": float(np.mean([p == t for p, t in pairs])) if pairs else None,
                             "n": len(pairs), "both": sum(p and t for p, t in pairs),
                             "neither": sum(not p and not t for p, t in pairs),
                             "model_only": sum(p and not t for p, t in pairs),
                             "truth_only": sum(t and not p for p, t in pairs)}
    else:
        out["measurable"] = None  # "10 mm" needs a spacing
    out["surface"] = {k: _summary([float(r[k]) for r in rows if r[k] is not None], seed)
                      for k in ("dice", "hd95_mm", "assd_mm", "surface_dice_1mm", "surface_dice_2mm")}
    out["surface"]["undefined_distance"] = sum(r["hd95_mm"] is None for r in rows)
    out["definitions"] = MEASUREMENT_DEFINITIONS
    return out


def score_measurements(pred: np.ndarray, truth: np.ndarray, patient_ids: Sequence[str],
                       spacing: tuple[float, float, float] | None, images: np.ndarray | None = None,
                       numbers: Sequence[int] | None = None, seed: int = 0) -> dict[str, Any]:
    """Per patient: the predicted and true masks' measurements and their agreement; and the cohort's."""
    rows = patient_rows(patient_agreements(pred, truth, patient_ids, spacing, images, numbers))
    return {"spacing_mm": None if spacing is None else list(spacing), "per_patient": rows,
            "cohort": measurement_cohort(rows, seed)}


# --- a dataset, everything at once (the evaluate CLI) ----------------------------------------

STATED_DEFINITION = ("shown_p_g3: the P(G3) the app states for the patient (calibrated, the model's, or the base "
                     "rate when the card withholds the number; lggdemo.inference.grade.PatientGrade)")


def score_dataset(seg: Engine, seg_cfg: SegConfig, arrays: SliceArrays, index: DatasetIndex, *,
                  grade: Engine | None = None, grade_cfg: GradeConfig | None = None,
                  card: ModelCard | None = None, spacing: tuple[float, float, float] | None = None,
                  device: torch.device | None = None) -> dict[str, Any]:
    """Every score of the patients in ``arrays`` (slices in slice order): ``segmentation`` (as a card keeps it,
    with the rule), ``measurements`` (:func:`score_measurements`) and, given a grade model, ``grade``. JSON-ready."""
    scored = score_segmentation(seg, seg_cfg, arrays.images, arrays.masks, arrays.patient_ids)
    out: dict[str, Any] = {"segmentation": {"postprocess": scored.postprocess,
                                            "per_patient_dice": scored.evaluation.per_patient,
                                            "metrics": {k: m.to_dict() for k, m in scored.evaluation.metrics.items()},
                                            "tumour_slice_dice_by_area": scored.by_area}}
    out["measurements"] = score_measurements(scored.masks, arrays.masks, arrays.patient_ids, spacing, arrays.images,
                                             arrays.numbers)
    if grade is not None and grade_cfg is not None:
        patients = list(dict.fromkeys(arrays.patient_ids.tolist()))
        g = evaluate_grade(grade, grade_cfg, arrays, scored.masks, index, patients, device, card=card)
        out["grade"] = {"per_patient_p_g3": g.per_patient, "labels": g.labels,
                        "metrics": {k: m.to_dict() for k, m in g.metrics.items()},
                        "shown": {"definition": STATED_DEFINITION, **stated_grade_report(g.grades, g.labels)}}
    return out
