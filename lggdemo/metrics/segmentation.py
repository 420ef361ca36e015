"""Segmentation metrics on numpy masks: Dice per slice, per patient volume, by tumour size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lggdemo.metrics.bootstrap import mean_ci
from lggdemo.metrics.definitions import DEFINITIONS, Metric


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two binary arrays of any shape; 1.0 when both are empty (nothing to find, nothing found)."""
    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    denom = int(p.sum()) + int(t.sum())
    return 1.0 if denom == 0 else 2.0 * int((p & t).sum()) / denom


def per_volume_dice(pred: np.ndarray, truth: np.ndarray, patient_ids: Sequence[str]) -> dict[str, float]:
    """(N, H, W) 0/1 predicted and true masks, slice i of patient ``patient_ids[i]`` -> each patient's 3D Dice of
    its stacked slices, in order of first appearance (1.0 for a patient with neither mask)."""
    ids = np.asarray(patient_ids)
    return {pid: dice(pred[ids == pid], truth[ids == pid]) for pid in dict.fromkeys(ids.tolist())}


def tumour_slice_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """(N, H, W) 0/1 predicted and true masks -> mean 2D Dice over the slices whose truth shows tumour (NaN if none)."""
    scores = [dice(p, t) for p, t in zip(pred, truth) if t.any()]
    return float(np.mean(scores)) if scores else float("nan")


AREA_BINS = (1, 256, 1024, 4096)  # ground-truth tumour pixels per 256² slice


def tumour_slice_dice_by_area(pred: np.ndarray, truth: np.ndarray,
                              edges: Sequence[int] = AREA_BINS) -> dict[str, dict[str, float]]:
    """Tumour-slice Dice split by the true tumour's area: where a U-Net fails is mostly a matter of size.

    Args:
        pred, truth: (N, 256, 256) 0/1 masks (areas are in pixels of 256² slices, as the bin edges).
        edges: lower bin edges in pixels.

    Returns:
        ``{"lo-hi px": {"n": slices, "dice": mean 2D Dice}}`` over the bins with slices (the last open-ended).
    """
    areas = truth.reshape(len(truth), -1).sum(1)
    scores = np.array([dice(p, t) for p, t in zip(pred, truth)])
    out: dict[str, dict[str, float]] = {}
    for lo, hi in zip(edges, [*edges[1:], None]):
        sel = (areas >= lo) & (areas < hi if hi is not None else True)
        if sel.any():
            name = f"{lo}-{hi - 1} px" if hi is not None else f">={lo} px"
            out[name] = {"n": int(sel.sum()), "dice": float(scores[sel].mean())}
    return out


@dataclass
class SegEvaluation:
    per_patient: dict[str, float]
    metrics: dict[str, Metric]


def segmentation_metrics(per_patient: dict[str, float], tumour_slice: float, n_tumour_slices: int) -> dict[str, Metric]:
    """Per-volume Dice mean (bootstrap 95% CI over patients, in the mapping's order) and median, and tumour-slice
    Dice over ``n_tumour_slices`` slices: the segmentation metrics of every card, evaluation and pooled fold."""
    vals = list(per_patient.values())
    n = len(vals)
    return {
        "per_volume_dice_mean": Metric(float(np.mean(vals)), mean_ci(vals), n, DEFINITIONS["per_volume_dice_mean"]),
        "per_volume_dice_median": Metric(float(np.median(vals)), None, n, DEFINITIONS["per_volume_dice_median"]),
        "tumour_slice_dice": Metric(float(tumour_slice), None, int(n_tumour_slices), DEFINITIONS["tumour_slice_dice"]),
    }


def evaluate_segmentation(pred: np.ndarray, truth: np.ndarray, patient_ids: Sequence[str]) -> SegEvaluation:
    """(N, H, W) predicted and true masks of patients' stacked slices -> per-patient Dice and the metrics."""
    per = per_volume_dice(pred, truth, patient_ids)
    n_slices = int(truth.reshape(len(truth), -1).any(1).sum())
    return SegEvaluation(per, segmentation_metrics(per, tumour_slice_dice(pred, truth), n_slices))
