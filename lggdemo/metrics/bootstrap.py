"""95% intervals by bootstrap over patients.

Kept as our own code on purpose: the grade interval redraws resamples that hold one class only (an AUC
is undefined there), which sklearn and scipy.stats.bootstrap do not do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def bootstrap_ci(
    fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
    labels: Sequence[int],
    scores: Sequence[float],
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile 95% interval of a metric, resampling patients (one label and score each); resamples with one class
    only are redrawn. ``None`` for fewer than two patients or one class.

    ``fn`` scores every resample at once: (resamples, patients) labels and scores -> one value per resample (the
    ``*_rows`` functions of :mod:`lggdemo.metrics.grade`). Called once per resample, sklearn's checks alone cost
    ~1.5 ms, seconds per interval and most of a small training run's scoring. The resamples are drawn one by one
    as before, so an interval is the one a per-resample loop gives.
    """
    y, s = np.asarray(labels), np.asarray(scores, float)
    if len(y) < 2 or len(np.unique(y)) < 2:
        return None
    rng = np.random.default_rng(seed)
    rows = []
    while len(rows) < n_boot:
        idx = rng.integers(0, len(y), len(y))
        if len(np.unique(y[idx])) < 2:
            continue
        rows.append(idx)
    picks = np.stack(rows)
    values = np.asarray(fn(y[picks], s[picks]), float)
    lo, hi = np.percentile(values[np.isfinite(values)], [2.5, 97.5])
    return float(lo), float(hi)


def mean_ci(values: Sequence[float], n_boot: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    """Percentile 95% interval of the mean of per-patient ``values``, resampling patients; ``None`` below two."""
    v = np.asarray(values, float)
    if len(v) < 2:
        return None
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), (n_boot, len(v)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def median_ci(values: Sequence[float], n_boot: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    """Percentile 95% interval of the median, resampling patients (as :func:`mean_ci` does for the mean)."""
    v = np.asarray(values, float)
    if len(v) < 2:
        return None
    rng = np.random.default_rng(seed)
    medians = np.median(v[rng.integers(0, len(v), (n_boot, len(v)))], axis=1)
    lo, hi = np.percentile(medians, [2.5, 97.5])
    return float(lo), float(hi)
