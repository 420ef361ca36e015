"""Grade metrics on per-patient P(G3): sklearn's, with bootstrap intervals over patients (numpy + sklearn only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, brier_score_loss, log_loss, roc_auc_score

from lggdemo.metrics.bootstrap import bootstrap_ci
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
    n = len(labels)
    return {
        "auc": Metric(roc_auc(labels, probs), bootstrap_ci(roc_auc, labels, probs, seed=seed), n, DEFINITIONS["auc"]),
        "accuracy": Metric(accuracy(labels, probs), bootstrap_ci(accuracy, labels, probs, seed=seed), n,
                           DEFINITIONS["accuracy"]),
        "balanced_accuracy": Metric(balanced_accuracy(labels, probs),
                                    bootstrap_ci(balanced_accuracy, labels, probs, seed=seed), n,
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
