"""Grade metrics on per-patient P(G3): sklearn's, with bootstrap intervals over patients (their ``*_rows`` forms)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, brier_score_loss, log_loss, roc_auc_score

from lggdemo.metrics.bootstrap import bootstrap_ci
from lggdemo.metrics.calibration import Platt
from lggdemo.metrics.definitions import DEFINITIONS, Metric


def _two_classes(labels: Sequence[int]) -> bool:
    return len(np.unique(np.asarray(labels, int))) == 2


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """sklearn's ROC AUC (ties count half); NaN when only one class is present, where it is undefined."""
    if not _two_classes(labels):
        return float("nan")
    return float(roc_auc_score(np.asarray(labels, int), np.asarray(scores, float)))


def accuracy(labels: Sequence[int], probs: Sequence[float]) -> float:
    """Accuracy of P(G3) >= 0.5; NaN for no patients."""
    if len(labels) == 0:
        return float("nan")
    return float(accuracy_score(np.asarray(labels, int), np.asarray(probs, float) >= 0.5))


def balanced_accuracy(labels: Sequence[int], probs: Sequence[float]) -> float:
    """Mean of G2 and G3 recall at P(G3) >= 0.5 (the recall of the one class present when only one is)."""
    if len(labels) == 0:
        return float("nan")
    y, p = np.asarray(labels, int), (np.asarray(probs, float) >= 0.5).astype(int)
    if not _two_classes(y):  # sklearn warns and averages over the predicted classes too: keep the class present
        return float((p == y).mean())
    return float(balanced_accuracy_score(y, p))


def roc_auc_rows(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """:func:`roc_auc` of each row of (rows, patients) arrays at once, for the bootstrap; every row holds both classes.

    The Mann-Whitney form: (rank sum of the G3 scores - n3 (n3 + 1) / 2) / (n3 n2) with average ranks for ties, the
    same number as sklearn's area under the ROC curve with ties counted half (a test compares them row by row).
    """
    y = np.asarray(labels, int) == 1
    ranks = rankdata(np.asarray(scores, float), axis=1)
    n3 = y.sum(axis=1)
    n2 = y.shape[1] - n3
    return (np.where(y, ranks, 0.0).sum(axis=1) - n3 * (n3 + 1) / 2.0) / (n3 * n2)


def accuracy_rows(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """:func:`accuracy` of each row, for the bootstrap."""
    return ((np.asarray(probs, float) >= 0.5) == (np.asarray(labels, int) == 1)).mean(axis=1)


def balanced_accuracy_rows(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """:func:`balanced_accuracy` of each row (every row holds both classes), for the bootstrap."""
    y, p = np.asarray(labels, int) == 1, np.asarray(probs, float) >= 0.5
    return ((p & y).sum(axis=1) / y.sum(axis=1) + (~p & ~y).sum(axis=1) / (~y).sum(axis=1)) / 2.0


def brier(labels: Sequence[int], probs: Sequence[float]) -> float:
    """Mean squared error of P(G3): 0.25 for a constant 0.5, lower is better."""
    return float(brier_score_loss(np.asarray(labels, int), np.asarray(probs, float), pos_label=1))


def log_loss_g3(labels: Sequence[int], probs: Sequence[float]) -> float:
    """Cross-entropy of P(G3) in nats: ln 2 = 0.693 for a constant 0.5, lower is better."""
    return float(log_loss(np.asarray(labels, int), np.clip(np.asarray(probs, float), 1e-6, 1 - 1e-6), labels=[0, 1]))


def reliability_bins(labels: Sequence[int], probs: Sequence[float], n_bins: int = 5) -> list[dict[str, float]]:
    """The reliability diagram's points (sklearn's ``calibration_curve``, uniform bins) with each bin's size."""
    y, p = np.asarray(labels, int), np.asarray(probs, float)
    observed, predicted = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, n_bins + 1)[1:-1], p), minlength=n_bins)  # its binning
    sizes = counts[counts > 0]  # calibration_curve drops the empty bins, in order
    return [{"predicted": float(a), "observed": float(b), "n": int(n)} for a, b, n in zip(predicted, observed, sizes)]


def grade_metrics(labels: Sequence[int], probs: Sequence[float], seed: int = 0) -> dict[str, Metric]:
    """Per-patient labels (1 = G3) and P(G3) in [0, 1] -> AUC, accuracy and balanced accuracy at 0.5, each with its
    bootstrap 95% interval over patients (``seed`` fixes the resamples)."""
    n = len(labels)
    return {
        "auc": Metric(roc_auc(labels, probs), bootstrap_ci(roc_auc_rows, labels, probs, seed=seed), n,
                      DEFINITIONS["auc"]),
        "accuracy": Metric(accuracy(labels, probs), bootstrap_ci(accuracy_rows, labels, probs, seed=seed), n,
                           DEFINITIONS["accuracy"]),
        "balanced_accuracy": Metric(balanced_accuracy(labels, probs),
                                    bootstrap_ci(balanced_accuracy_rows, labels, probs, seed=seed), n,
                                    DEFINITIONS["balanced_accuracy"]),
    }


def age_baseline_probs(train_ages: Sequence[float | None], train_labels: Sequence[int],
                       ages: Sequence[float | None]) -> np.ndarray:
    """P(G3) from a logistic regression on age alone (missing ages imputed with the training mean)."""
    tr = np.array([np.nan if a is None else a for a in train_ages], float)
    mean = float(np.nanmean(tr)) if np.isfinite(tr).any() else 45.0
    x_tr = np.where(np.isfinite(tr), tr, mean)[:, None]
    te = np.array([np.nan if a is None else a for a in ages], float)
    x_te = np.where(np.isfinite(te), te, mean)[:, None]
    model = LogisticRegression().fit(x_tr, np.asarray(train_labels, int))
    return model.predict_proba(x_te)[:, 1]


#: How :func:`fit_platt` fits, in words for the card.
PLATT_METHOD = "Platt scaling: sklearn LogisticRegression (C=1.0) of the grade on the patient logit"


def fit_platt(logits: Sequence[float], labels: Sequence[int]) -> Platt:
    """Fit Platt scaling on (logit, grade) pairs; both grades must be present (ValueError otherwise).

    Default regularisation (C=1.0), as in the calibration rule of 2026-11-28: with a few dozen patients an
    unpenalised slope can run away on a logit that happens to separate the few points it sees.
    """
    x, y = np.asarray(logits, float)[:, None], np.asarray(labels, int)
    if not _two_classes(y):
        raise ValueError("Platt scaling needs patients of both grades")
    model = LogisticRegression().fit(x, y)
    return Platt(float(model.coef_[0, 0]), float(model.intercept_[0]), len(y))


def cross_fitted_platt(logits: Sequence[float], labels: Sequence[int], groups: Sequence[int]) -> np.ndarray:
    """Calibrated P(G3) where each group's patients are calibrated by a Platt fitted on the *other* groups only.

    This is how calibrated numbers may be reported: the Platt the app uses is fitted on every patient, so
    scoring it on those same patients would grade the calibration on its own training data.
    """
    z, y, g = np.asarray(logits, float), np.asarray(labels, int), np.asarray(groups)
    out = np.empty(len(z), float)
    for group in np.unique(g):
        held = g == group
        out[held] = fit_platt(z[~held], y[~held]).apply(z[held])
    return out


def probability_report(labels: Sequence[int], probs: Sequence[float], seed: int = 0, n_bins: int = 5,
                       n_boot: int = 2000) -> dict[str, Any]:
    """What a set of per-patient P(G3) is worth: AUC with its bootstrap CI, Brier, log loss, reliability bins."""
    n = len(labels)
    auc = Metric(roc_auc(labels, probs), bootstrap_ci(roc_auc_rows, labels, probs, n_boot=n_boot, seed=seed), n,
                 DEFINITIONS["auc"])
    return {"auc": auc.to_dict(),
            "brier": Metric(brier(labels, probs), None, n, DEFINITIONS["brier"]).to_dict(),
            "log_loss": Metric(log_loss_g3(labels, probs), None, n, DEFINITIONS["log_loss"]).to_dict(),
            "reliability_bins": reliability_bins(labels, probs, n_bins), "n": n}
