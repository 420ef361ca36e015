"""Grade metrics on per-patient P(G3): sklearn's, with bootstrap intervals over patients.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lggdemo.metrics.bootstrap import bootstrap_ci
from lggdemo.metrics.definitions import DEFINITIONS, Metric


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Mann-Whitney AUC with ties counted half; NaN when only one class is present."""
    y = np.asarray(labels, int)
    s = np.asarray(scores, float)
    pos, neg = s[y == 1], s[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def accuracy(labels: Sequence[int], probs: Sequence[float]) -> float:
    y, p = np.asarray(labels, int), np.asarray(probs, float) >= 0.5
    return float((p == y).mean()) if len(y) else float("nan")


def balanced_accuracy(labels: Sequence[int], probs: Sequence[float]) -> float:
    y, p = np.asarray(labels, int), (np.asarray(probs, float) >= 0.5).astype(int)
    recalls = [float((p[y == c] == c).mean()) for c in (0, 1) if (y == c).any()]
    return float(np.mean(recalls)) if recalls else float("nan")


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
    from sklearn.linear_model import LogisticRegression

    tr = np.array([np.nan if a is None else a for a in train_ages], float)
    mean = float(np.nanmean(tr)) if np.isfinite(tr).any() else 45.0
    x_tr = np.where(np.isfinite(tr), tr, mean)[:, None]
    te = np.array([np.nan if a is None else a for a in ages], float)
    x_te = np.where(np.isfinite(te), te, mean)[:, None]
    model = LogisticRegression().fit(x_tr, np.asarray(train_labels, int))
    return model.predict_proba(x_te)[:, 1]
