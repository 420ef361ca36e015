"""The evaluation CLI: both models scored on any kaggle_3m dataset (metrics: ``lggdemo.metrics``).

``lggdemo-evaluate --data DIR [--weights DIR] [--split train|val] [--json FILE]`` scores weights on any
dataset in the kaggle_3m layout. The trainer's validation report calls the same functions, so the
numbers in a model card and the numbers a user recomputes on their own data mean the same thing.

Definitions (also written into every model card):
- masks: every patient-level score is of the masks the app's whole-patient mode shows
  (:func:`predict_patient_masks`: the 2D rule, then the largest 3D component per patient).
- per-volume Dice: one Dice over all voxels of a patient (prediction and truth stacked over slices),
  averaged over patients -- the measure of Buda et al. 2019. A patient with no tumour in either
  counts 1.
- tumour-slice Dice: per-slice 2D Dice averaged over slices whose ground truth shows tumour.
- grade AUC, accuracy, balanced accuracy: per patient, P(G3) from the area-weighted slice logits,
  threshold 0.5; 95% intervals by bootstrap over patients (2000 resamples, fixed seed).
- shown_p_g3 (``--json``, per patient, beside ``raw_score``): the P(G3) the app states for that patient under
  the card's rule (:class:`lggdemo.inference.grade.PatientGrade`): calibrated, or the base rate when withheld;
  with the Brier score and log loss of both over the graded patients.
- trained_on (``--json``): the scored patients the weights' card lists as training patients; a warning names
  how many, since their numbers flatter the model (the bundled weights trained on every patient of ../shared).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lggdemo.data.arrays import SliceArrays, slice_arrays
from lggdemo.data.kaggle import Clinical, DatasetError, DatasetIndex, scan_dataset
from lggdemo.device import DeviceError, choose_device
from lggdemo.inference.grade import PatientGrade, patient_grade
from lggdemo.metrics.definitions import Metric
from lggdemo.metrics.grade import brier, grade_metrics, log_loss_g3
from lggdemo.metrics.segmentation import evaluate_segmentation, tumour_slice_dice_by_area
from lggdemo.models.card import ModelCard
from lggdemo.models.engine import CHOICES as ENGINES
from lggdemo.models.engine import ENV_VAR, Engine, EngineError, as_engine, choose_engine, load_engine
from lggdemo.models.forward import grade_slice_logits, predict_patient_masks
from lggdemo.models.networks import GradeConfig, GradeNet, grade_config_from_dict, seg_config_from_dict
from lggdemo.models.postprocess import patient_rule_text
from lggdemo.models.weights import GRADE_FILE, SEG_FILE, WeightsError, active_dir, load_card, read_config

# --- model evaluation ------------------------------------------------------------------------














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


# --- CLI -------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    import lggdemo  # noqa: F401  (torchvision guard)

    ap = argparse.ArgumentParser(prog="lggdemo-evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a kaggle_3m folder (or its parent)")
    ap.add_argument("--weights", default=None, help="weights folder (default: the active weights)")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--patients", default=None, help="comma-separated patient folders to score (default: all)")
    which.add_argument("--split", choices=["train", "val"], default=None,
                       help="score the patients the weights' card lists on that side of its split")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--engine", choices=ENGINES, default=None,
                    help=f"what runs the networks (default: ${ENV_VAR}, else auto: ONNX Runtime on a CPU, PyTorch on a GPU)")
    ap.add_argument("--json", default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    try:
        device = choose_device(args.device)
        choice = choose_engine(args.engine, device)
        index = scan_dataset(args.data)
        wdir = Path(args.weights) if args.weights else active_dir()
        seg_cfg = seg_config_from_dict(read_config(wdir / SEG_FILE))
        seg = load_engine(wdir, device, choice, models=("segmentation",))
    except (DatasetError, DeviceError, WeightsError, EngineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if seg.note:
        print(f"note: {seg.note}", file=sys.stderr)
    for p in index.problems:
        print(f"warning: {p}", file=sys.stderr)
    chosen = args.patients.split(",") if args.patients else None
    if args.split:
        try:
            chosen = list(getattr(load_card(wdir).split, args.split))
        except WeightsError as exc:
            print(f"error: the card in {wdir} has no {args.split} split: {exc}", file=sys.stderr)
            return 2
        if not chosen:
            print(f"error: the card in {wdir} has no {args.split} split", file=sys.stderr)
            return 2
    arrays = slice_arrays(index, 256)
    keep = np.isin(arrays.patient_ids, chosen) if chosen is not None else np.ones(len(arrays.patient_ids), bool)
    arrays = SliceArrays(arrays.images[keep], arrays.masks[keep], arrays.patient_ids[keep], arrays.numbers[keep])
    patients = list(dict.fromkeys(arrays.patient_ids.tolist()))
    try:
        card: ModelCard | None = load_card(wdir)
    except WeightsError:
        card = None
    # Scores on a patient the weights trained on flatter them; the bundled weights trained on every patient of
    # ../shared, so say it wherever it happens, by name in the JSON.
    trained_on = sorted(set(patients) & set(card.split.train)) if card is not None else []
    if trained_on:
        print(f"warning: {len(trained_on)} of {len(patients)} patients trained these weights (their card's training "
              "patients): their numbers flatter the model; the card's cross-validation is its estimate",
              file=sys.stderr)
    pred = predict_patient_masks(seg, seg_cfg, arrays.images, arrays.patient_ids)
    seg_eval = evaluate_segmentation(pred, arrays.masks, arrays.patient_ids)
    by_area = tumour_slice_dice_by_area(pred, arrays.masks)
    result: dict[str, object] = {"weights": str(wdir), "data": str(index.root), "device": str(device),
                                 "engine": seg.description, "trained_on": trained_on,
                                 "segmentation": {"postprocess": patient_rule_text(seg_cfg.min_component_px),
                                                  "per_patient_dice": seg_eval.per_patient,
                                                  "metrics": {k: m.to_dict() for k, m in seg_eval.metrics.items()},
                                                  "tumour_slice_dice_by_area": by_area}}
    print(f"masks: {patient_rule_text(seg_cfg.min_component_px)} (as the app's whole-patient mode shows them)")
    print(f"{'patient':<28} {'per-volume Dice':>15}")
    for pid, d in seg_eval.per_patient.items():
        print(f"{pid:<28} {d:>15.3f}")
    for name, m in seg_eval.metrics.items():
        ci = f"  (95% CI {m.ci95[0]:.3f}–{m.ci95[1]:.3f})" if m.ci95 else ""
        print(f"{name}: {m.value:.3f}{ci}  n={m.n}")
    for area, b in by_area.items():
        print(f"tumour-slice Dice, true tumour {area}: {b['dice']:.3f}  n={b['n']}")
    try:
        grade_cfg = grade_config_from_dict(read_config(wdir / GRADE_FILE))
        grade = load_engine(wdir, device, choice, models=("grade",))
    except WeightsError as exc:
        print(f"grade model not evaluated: {exc}", file=sys.stderr)
    else:
        g = evaluate_grade(grade, grade_cfg, arrays, pred, index, patients, device, card=card)
        stated = stated_grade_report(g.grades, g.labels)
        result["grade"] = {"per_patient_p_g3": g.per_patient, "labels": g.labels,
                           "metrics": {k: m.to_dict() for k, m in g.metrics.items()},
                           "shown": {"definition": "shown_p_g3: the P(G3) the app states for the patient (calibrated, "
                                                   "the model's, or the base rate when the card withholds the "
                                                   "number; lggdemo.inference.grade.PatientGrade)", **stated}}
        for name, m in g.metrics.items():
            ci = f"  (95% CI {m.ci95[0]:.3f}–{m.ci95[1]:.3f})" if m.ci95 else ""
            print(f"grade {name}: {m.value:.3f}{ci}  n={m.n}")
        for key, label in (("shown_p_g3", "what the app states"), ("raw_score", "the raw score"),
                           ("base_rate", "the base rate")):
            if key in stated:
                print(f"grade, {label}: Brier {stated[key]['brier']:.4f}, log loss {stated[key]['log_loss']:.4f}  "
                      f"n={stated[key]['n']}")
        if not g.metrics:
            print("grade: data.csv has no grades for these patients; not evaluated")
    if card is not None:
        result["card_version"] = card.version
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
