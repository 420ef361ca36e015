"""How the mask of one slice depends on the threshold: Dice and area against the threshold, from one forward pass.

A single threshold shows one mask; a class learns more from the whole trade-off -- where the Dice peaks, how
fast the mask grows as the threshold falls, and whether the model's own threshold sits near the peak. Every
point is :func:`~lggdemo.teach.steps.masks_at` of the same :class:`~lggdemo.teach.steps.ModelView` (the
probability already computed), so the curve passes exactly through the mask the lesson shows at each threshold.

:func:`most_sensitive_slice` picks, among slices already predicted, the one whose mask changes most between a
low and a high threshold: on a confident slice the threshold "hardly moves" anything, which teaches little.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lggdemo.metrics.segmentation import dice
from lggdemo.teach.errors import TeachInputError
from lggdemo.teach.steps import ModelView, masks_at

#: The thresholds a curve is drawn at: the Threshold slider's range, every 0.025.
CURVE_THRESHOLDS = np.round(np.arange(0.05, 0.9501, 0.025), 3)
#: The low and high thresholds :func:`most_sensitive_slice` compares.
SENSITIVITY_RANGE = (0.05, 0.95)


@dataclass(frozen=True)
class ThresholdCurve:
    """The final mask's area (and Dice, with a reference) at each threshold of one slice."""

    thresholds: np.ndarray  # (T,) increasing
    area_px: np.ndarray  # (T,) int: the final mask (after the model's clean-up rule) at each threshold
    dice: np.ndarray | None  # (T,) Dice against the reference mask; None without one

    @property
    def area_range(self) -> tuple[int, int]:
        """(smallest, largest) final mask over the thresholds: how much the threshold matters here."""
        return int(self.area_px.min()), int(self.area_px.max())

    @property
    def best(self) -> tuple[float, float] | None:
        """(threshold, Dice) where the Dice peaks (the lowest such threshold); None without a reference."""
        if self.dice is None:
            return None
        i = int(np.argmax(self.dice))
        return float(self.thresholds[i]), float(self.dice[i])


def threshold_curve(view: ModelView, truth: np.ndarray | None = None,
                    thresholds: Sequence[float] | np.ndarray = CURVE_THRESHOLDS) -> ThresholdCurve:
    """Area and Dice of the final mask at every threshold (strictly between 0 and 1) of one slice."""
    ts = np.asarray(sorted(float(t) for t in thresholds), dtype=np.float64)
    if len(ts) == 0 or ts[0] <= 0.0 or ts[-1] >= 1.0:
        raise TeachInputError("thresholds must be a non-empty list strictly between 0 and 1")
    if truth is not None and np.shape(truth) != view.probability.shape:
        raise TeachInputError(f"the reference mask is {np.shape(truth)}, the slice {view.probability.shape}")
    areas, scores = [], []
    for t in ts:
        final = masks_at(view, t).final
        areas.append(int(final.sum()))
        if truth is not None:
            scores.append(dice(final, truth))
    return ThresholdCurve(ts, np.asarray(areas, dtype=np.int64),
                          None if truth is None else np.asarray(scores, dtype=np.float64))


def threshold_change_px(probability: np.ndarray, low: float = SENSITIVITY_RANGE[0],
                        high: float = SENSITIVITY_RANGE[1]) -> int:
    """Pixels whose side of the threshold changes between ``low`` and ``high`` (before any clean-up rule)."""
    p = np.asarray(probability, dtype=np.float32)
    return int(((p > low) & ~(p > high)).sum())


def most_sensitive_slice(probabilities: Sequence[np.ndarray]) -> int | None:
    """Index of the slice whose mask changes most across the threshold range; None when none changes at all."""
    if len(probabilities) == 0:
        return None
    changes = [threshold_change_px(p) for p in probabilities]
    best = int(np.argmax(changes))
    return best if changes[best] > 0 else None
