"""Where a mask is wrong, and what its Dice is made of: pure functions of two 0/1 arrays.

A Dice of 0.8 means little to a class until it sees the pixels behind it: the true positives both
masks share, the false positives the model added and the false negatives it missed. The Dice value
itself always comes from :func:`lggdemo.metrics.segmentation.dice` (with its convention that two empty masks
score 1), so the number explained here is the number every other page and model card reports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lggdemo.metrics.segmentation import dice
from lggdemo.viz.overlay import overlay_mask

#: Values of :func:`error_map`'s label image.
TN, TP, FP, FN = 0, 1, 2, 3
#: What each label is called on the page, in legend order.
ERROR_NAMES = {TP: "true positive", FP: "false positive", FN: "false negative"}
#: Colours of the error overlay: Streamlit's own green, orange and blue, so a markdown legend
#: (``:green[...]`` etc.) matches the picture; green/orange/blue stay apart for red-green colour blindness.
ERROR_COLOURS = {TP: (33, 195, 84), FP: (255, 164, 33), FN: (28, 131, 225)}
ERROR_MARKDOWN_COLOURS = {TP: "green", FP: "orange", FN: "blue"}


class TeachInputError(ValueError):
    """Arrays the teaching functions cannot compare (wrong shape); the message is for the caller."""


@dataclass(frozen=True)
class ErrorCounts:
    """Pixel counts of the four outcomes of a predicted mask against the truth."""

    tp: int
    fp: int
    fn: int
    tn: int

    def of(self, label: int) -> int:
        return {TP: self.tp, FP: self.fp, FN: self.fn, TN: self.tn}[label]


@dataclass(frozen=True)
class ErrorMap:
    labels: np.ndarray  # (H, W) uint8: TN, TP, FP or FN per pixel
    counts: ErrorCounts


def _pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred), np.asarray(truth)
    if p.shape != t.shape or p.ndim != 2:
        raise TeachInputError(f"predicted and true masks must be 2D arrays of one shape, got {p.shape} and {t.shape}")
    return p.astype(bool), t.astype(bool)


def error_map(pred: np.ndarray, truth: np.ndarray) -> ErrorMap:
    """Label every pixel TP (in both), FP (predicted only), FN (true only) or TN, and count them."""
    p, t = _pair(pred, truth)
    labels = np.zeros(p.shape, np.uint8)
    labels[p & t] = TP
    labels[p & ~t] = FP
    labels[~p & t] = FN
    counts = np.bincount(labels.ravel(), minlength=4)
    return ErrorMap(labels, ErrorCounts(tp=int(counts[TP]), fp=int(counts[FP]), fn=int(counts[FN]), tn=int(counts[TN])))


def draw_errors(base: np.ndarray, errors: ErrorMap, *, alpha: float = 0.6) -> np.ndarray:
    """The error labels over an RGB slice, one :data:`ERROR_COLOURS` colour per kind of pixel."""
    out = base
    for label, colour in ERROR_COLOURS.items():
        out = overlay_mask(out, errors.labels == label, alpha=alpha, colour=colour)
    return out


@dataclass(frozen=True)
class DiceBreakdown:
    """Dice and IoU of a predicted mask A against the truth B, with the counts they are made of."""

    intersection: int  # |A∩B|: true positives
    predicted: int  # |A|
    truth: int  # |B|
    union: int  # |A∪B|
    dice: float  # 2|A∩B| / (|A| + |B|); 1 when both are empty (lggdemo.metrics.segmentation.dice)
    iou: float  # |A∩B| / |A∪B|; 1 when both are empty, by the same convention

    @property
    def both_empty(self) -> bool:
        return self.predicted == 0 and self.truth == 0

    def dice_formula(self) -> str:
        """The Dice worked out with this slice's numbers, as one line of plain text."""
        if self.both_empty:
            return ("Dice = 2·|A∩B| / (|A| + |B|) = 2·0 / (0 + 0): both masks are empty, and Dice counts that as "
                    "1.000 (nothing to find, nothing found)")
        return (f"Dice = 2·|A∩B| / (|A| + |B|) = 2·{self.intersection} / ({self.predicted} + {self.truth}) "
                f"= {2 * self.intersection} / {self.predicted + self.truth} = {self.dice:.3f}")

    def iou_formula(self) -> str:
        if self.both_empty:
            return "IoU = |A∩B| / |A∪B| = 0 / 0: counted as 1.000, like the Dice"
        return f"IoU = |A∩B| / |A∪B| = {self.intersection} / {self.union} = {self.iou:.3f}"


def dice_breakdown(pred: np.ndarray, truth: np.ndarray) -> DiceBreakdown:
    """Counts, Dice and IoU of two 0/1 masks (A = predicted, B = truth)."""
    p, t = _pair(pred, truth)
    inter, union = int((p & t).sum()), int((p | t).sum())
    return DiceBreakdown(intersection=inter, predicted=int(p.sum()), truth=int(t.sum()), union=union,
                         dice=dice(p, t), iou=1.0 if union == 0 else inter / union)
