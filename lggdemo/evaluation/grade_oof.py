"""The grade model's out-of-fold estimate and the calibration the app uses, pooled from k fold runs of the trainer.

Each fold run (``python -m lggdemo.train --fold I/K`` training the grade model, cropping where that fold's U-Net
draws) records the P(G3) and logit of its held-out patients, and of a logistic regression on age alone fitted on
its training patients. Pooled, every graded patient has one out-of-fold prediction from a model that never saw
it. From those:

- the model's and age alone's AUC (bootstrap CI), Brier score, log loss and reliability bins;
- the Platt scaling the app applies, fitted on *all* out-of-fold predictions (``calibration``);
- the calibrated numbers reported beside it, *cross-fitted*: each fold calibrated by a Platt fitted on the
  other folds only, so no reported number comes from a calibration fitted on the patients it scores;
- the base rate each fold model would state (its training patients' G3 fraction), scored the same way.

The app shows a number only when the out-of-fold AUC's 95% CI lies above 0.5 (``inference.grade``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lggdemo.evaluation.crossval import (
    PRECISION_CAVEAT,
    ROUNDING_ONLY,
    CrossValError,
    as_card,
    precision_used,
    run_precision,
    same_recipe,
    seg_recipe,
)
from lggdemo.metrics.grade import PLATT_METHOD, brier, cross_fitted_platt, fit_platt, log_loss_g3, probability_report
from lggdemo.models.card import ModelCard
from lggdemo.models.weights import load_card, write_card

#: What makes two grade-model trainings the same recipe (paths, seeds, the split and the inner CV do not).
GRADE_RECIPE_KEYS = ("grade_image_size", "grade_epochs", "grade_samples", "batch_size", "lr", "precision", "grade_init")
_DEFAULTS = {"precision": "auto", "grade_init": "segmentation"}


def grade_recipe(card: ModelCard | dict[str, Any]) -> dict[str, Any]:
    card = as_card(card)
    if not card.grade.trained_in_this_run:
        raise CrossValError("its grade model was copied from another run, so its card does not record how it was trained")
    values = {k: card.train_config.get(k, _DEFAULTS.get(k)) for k in GRADE_RECIPE_KEYS}
    return {**values, "precision": precision_used(card.train_config, run_precision(card), card.device)}


def _logit(p: float) -> float:
    q = min(max(float(p), 1e-7), 1 - 1e-7)
    return float(np.log(q / (1 - q)))


def _fold(name: str, card: ModelCard) -> dict[str, Any]:
    """One fold's held-out grade predictions, refused unless they are out-of-fold and drawn as the app draws them."""
    split, grade = card.split, card.grade
    if split.fold is None or split.folds is None:
        raise CrossValError(f"{name} was not trained with --fold I/K: it holds out a fraction, not a fold")
    if not grade.held_out or not card.segmentation.held_out:
        raise CrossValError(f"{name}: its models were not all trained on this fold's training patients")
    if grade.data.get("validation_masks") in (None, "ground truth"):
        raise CrossValError(f"{name}: its held-out patients were graded on ground-truth masks, not on its U-Net's")
    probs = {str(k): float(v) for k, v in (grade.data.get("per_patient_p_g3") or {}).items()}
    labels = {str(k): int(v) for k, v in (grade.data.get("labels") or {}).items()}
    ages = {str(k): float(v) for k, v in (grade.data.get("per_patient_age_p_g3") or {}).items()}
    logits = {str(k): float(v) for k, v in (grade.data.get("per_patient_logit") or {}).items()}
    if not probs or set(probs) != set(labels):
        raise CrossValError(f"{name} has no held-out grade predictions")
    if not set(probs) <= set(split.val) or set(split.train) & set(split.val):
        raise CrossValError(f"{name} graded patients outside its held-out fold")
    if set(ages) != set(probs):
        raise CrossValError(f"{name} records no age-only predictions (trained before they were recorded)")
    rate = grade.data.get("base_rate_g3")
    return {"fold": split.fold, "folds": split.folds, "seed": split.seed, "run": name, "train": set(split.train),
            "val": set(split.val), "p": probs, "y": labels, "age": ages,
            "logit": {p: logits.get(p, _logit(probs[p])) for p in probs},
            "base_rate": float(rate["value"]) if isinstance(rate, dict) and "value" in rate else None}


def pool_grade_folds(cards: Sequence[ModelCard | dict[str, Any]], names: Sequence[str] | None = None,
                     seed: int = 0, n_boot: int = 2000) -> dict[str, Any]:
    """Pool the folds' out-of-fold P(G3); fit the app's Platt on all of it, report cross-fitted numbers beside it.

    ``n_boot``: bootstrap resamples of each AUC interval (2,000 as everywhere; tests use fewer).
    """
    names = list(names or [f"run {i + 1}" for i in range(len(cards))])
    cards = [as_card(c) for c in cards]
    folds: dict[int, dict[str, Any]] = {}
    recipes = []
    for name, card in zip(names, cards):
        f = _fold(name, card)
        if f["fold"] in folds:
            raise CrossValError(f"{name} repeats fold {f['fold']}")
        folds[f["fold"]] = f
        try:
            recipes.append((grade_recipe(card), seg_recipe(card) if card.segmentation.trained_in_this_run else None))
        except CrossValError as exc:
            raise CrossValError(f"{name}: {exc}") from None
    ks, seeds = {f["folds"] for f in folds.values()}, {f["seed"] for f in folds.values()}
    if len(ks) != 1 or len(seeds) != 1:
        raise CrossValError(f"the runs come from different partitions (folds {sorted(ks)}, seeds {sorted(seeds)})")
    k = ks.pop()
    if sorted(folds) != list(range(k)):
        raise CrossValError(f"{k}-fold cross-validation needs every fold; missing fold(s) {sorted(set(range(k)) - set(folds))}")
    g0, s0 = recipes[0]
    if any(g != g0 or (s is None) != (s0 is None) or (s is not None and not same_recipe(s, s0)) for g, s in recipes):
        raise CrossValError("the runs were trained with different recipes")
    vals = [f["val"] for f in folds.values()]
    if sum(map(len, vals)) != len(set().union(*vals)) or set().union(*vals) != folds[0]["train"] | folds[0]["val"]:
        raise CrossValError("the held-out folds do not partition the patients exactly once")

    patients = [p for i in range(k) for p in sorted(folds[i]["p"])]
    group = np.array([i for i in range(k) for _ in folds[i]["p"]])
    y = np.array([folds[i]["y"][p] for i in range(k) for p in sorted(folds[i]["p"])], int)
    z = np.array([folds[i]["logit"][p] for i in range(k) for p in sorted(folds[i]["p"])], float)
    p_model = np.array([folds[i]["p"][p] for i in range(k) for p in sorted(folds[i]["p"])], float)
    p_age = np.array([folds[i]["age"][p] for i in range(k) for p in sorted(folds[i]["p"])], float)
    if len(set(y.tolist())) < 2:
        raise CrossValError("the graded patients are all of one grade: no AUC, no calibration")
    try:
        calibrated = cross_fitted_platt(z, y, group)
    except ValueError:
        raise CrossValError("a fold's training patients are all of one grade: its calibration cannot be fitted") from None
    platt = fit_platt(z, y)
    rates = [folds[i]["base_rate"] for i in range(k)]
    out: dict[str, Any] = {
        "method": f"{k}-fold patient-level cross-validation (seed {seeds.pop()}): every graded patient's P(G3) from the "
                  "fold's grade model, which never saw it, on the masks the fold's U-Net drew; age alone: a logistic "
                  "regression fitted on the fold's training patients",
        "n": int(len(y)), "n_g3": int(y.sum()), "folds": k, "runs": [folds[i]["run"] for i in range(k)],
        "n_boot": n_boot,
        "model": probability_report(y, p_model, seed, n_boot=n_boot),
        "age_only": probability_report(y, p_age, seed, n_boot=n_boot),
        "calibrated_cross_fitted": {**probability_report(y, calibrated, seed, n_boot=n_boot),
                                    "method": f"{PLATT_METHOD}, each fold's fitted on the other folds' predictions"},
        "recipe": g0,
        "per_patient": {pid: {"fold": int(g), "g3": int(yy), "logit": float(zz), "p_g3": float(pm), "age_p_g3": float(pa),
                              "calibrated_p_g3": float(pc)}
                        for pid, g, yy, zz, pm, pa, pc in zip(patients, group, y, z, p_model, p_age, calibrated)},
    }
    if None not in rates:  # what each fold's app would have stated instead: its training patients' G3 fraction
        constant = np.array([rates[g] for g in group])
        out["base_rate_cross_fitted"] = {"brier": brier(y, constant), "log_loss": log_loss_g3(y, constant),
                                         "n": int(len(y)), "values": rates}
    return {"out_of_fold": out,
            "calibration": {"method": PLATT_METHOD, **platt.to_dict(),
                            "fitted_on": f"the out-of-fold predictions of {platt.n} graded patients ({k} folds)"}}


def record_grade(weights: Path, pooled: dict[str, Any]) -> None:
    """Write ``grade.out_of_fold`` and ``grade.calibration`` into a weights folder's card, only if its grade model
    was trained by the folds' recipe (the estimate and the calibration say nothing about another one)."""
    card = load_card(weights)
    try:
        recipe = grade_recipe(card)
    except CrossValError as exc:
        raise CrossValError(f"{weights}: {exc}") from None
    folds = pooled["out_of_fold"]["recipe"]
    caveat = None
    if recipe != folds:
        rest_same = {**recipe, "precision": None} == {**folds, "precision": None}
        if not (rest_same and {recipe["precision"], folds["precision"]} <= ROUNDING_ONLY):
            raise CrossValError(f"the grade model in {weights} was trained by another recipe ({recipe}) than the folds' "
                                f"({folds}); their estimate says nothing about it")
        caveat = PRECISION_CAVEAT.format(folds=folds["precision"], weights=recipe["precision"])
    estimate = {**pooled["out_of_fold"], **({"precision_note": caveat} if caveat else {})}
    write_card(weights, card.with_model("grade", card.grade.updated(out_of_fold=estimate,
                                                                    calibration=pooled["calibration"])))
