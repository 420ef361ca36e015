"""A mask against a reference mask: overlap, surface distances, and how far apart the clinical numbers land.

:func:`agreement` measures both masks (:func:`~lggdemo.measure.measurements.measure`, the same rule for both) and
compares them: Dice (the project's, 1 when both are empty), HD95, ASSD and surface Dice at 1 and 2 mm
(:mod:`lggdemo.metrics.surface`, MONAI's; see there what they are when a side is empty), and the volume and
bidimensional-product differences in % of the reference.

Without a spacing every distance is in voxel units (a slice step counts as one pixel, which on real scans it is
not: treat those as a rough ranking only), ``distance_units`` says so, and the percentages, being ratios, are
unchanged for square pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lggdemo.measure.measurements import Measurements, measure
from lggdemo.metrics.segmentation import dice
from lggdemo.metrics.surface import surface_metrics


@dataclass(frozen=True)
class Agreement:
    dice: float
    hd95_mm: float | None  # None when exactly one mask is empty (no surface to measure to)
    assd_mm: float | None
    surface_dice_1mm: float
    surface_dice_2mm: float
    volume_diff_pct: float | None  # (prediction - reference) / reference x 100; None when the reference is empty
    product_diff_pct: float | None  # the same for the bidimensional product
    measurable_agrees: bool | None  # both masks measurable by RANO-LGG, or both not; None without a spacing
    distance_units: str  # "mm", or "voxels" when the spacing is unknown
    empty: str  # "none" | "both" | "prediction" | "reference"
    prediction: Measurements
    reference: Measurements

    def to_dict(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(float(v), 4)

        return {"dice": r(self.dice), "hd95_mm": r(self.hd95_mm), "assd_mm": r(self.assd_mm),
                "surface_dice_1mm": r(self.surface_dice_1mm), "surface_dice_2mm": r(self.surface_dice_2mm),
                "volume_diff_pct": r(self.volume_diff_pct), "product_diff_pct": r(self.product_diff_pct),
                "measurable_agrees": self.measurable_agrees, "distance_units": self.distance_units,
                "empty": self.empty}


def percent_difference(value: float | None, reference: float | None) -> float | None:
    """(value - reference) / reference x 100, or None when either is missing or the reference is 0."""
    if value is None or reference is None or reference == 0:
        return None
    return (float(value) - float(reference)) / float(reference) * 100.0


def _product(m: Measurements) -> float | None:
    """The product in mm² (px² without a spacing); 0 for an empty mask (no lesion measures nothing)."""
    if not m.found:
        return 0.0
    return m.bidimensional_product_mm2 if m.spacing is not None else m.bidimensional_product_px2


def agreement(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, float, float] | None,
              probability: np.ndarray | None = None, head: np.ndarray | None = None) -> Agreement:
    """(S, H, W) predicted and reference masks, spacing (slice, row, column) mm or None -> :class:`Agreement`.

    ``probability`` (the prediction's) and ``head`` go to :func:`measure` for the prediction's range and both
    masks' laterality.
    """
    p_m = measure(pred, spacing, probability, head)
    r_m = measure(ref, spacing, None, head)
    s = surface_metrics(np.asarray(pred) > 0, np.asarray(ref) > 0, spacing)
    vol_p = p_m.volume_voxels
    vol_r = r_m.volume_voxels
    agrees = None if spacing is None else bool(p_m.measurable) == bool(r_m.measurable)
    return Agreement(dice=dice(pred, ref), hd95_mm=s.hd95_mm, assd_mm=s.assd_mm,
                     surface_dice_1mm=s.surface_dice_1mm, surface_dice_2mm=s.surface_dice_2mm,
                     volume_diff_pct=percent_difference(vol_p, vol_r),
                     product_diff_pct=percent_difference(_product(p_m), _product(r_m)),
                     measurable_agrees=agrees, distance_units="mm" if spacing is not None else "voxels",
                     empty=s.empty, prediction=p_m, reference=r_m)
