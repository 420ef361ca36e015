"""What a clinician measures on a tumour mask, in one call: :func:`measure` -> :class:`Measurements`.

Inputs are in the display layout (``patient.Volume``): (S, H, W) masks, spacing (slice, row, column) in mm.

- **Volume** in mL, with a range on the model's probability (:mod:`.volume`; RANO 2.0 allows volumes).
- **Bidimensional product** (RANO-LGG, van den Bent et al., Lancet Oncol 2011): on the axial slice where the
  largest lesion's cross-section has the most pixels, its longest diameter times the longest diameter
  perpendicular to it (:mod:`.diameters`). Measurable when both are >= 10 mm. Only the largest lesion is
  measured (RANO sums the products of up to a few target lesions; the count of lesions is reported beside it).
- **Largest 3D diameter** of the largest lesion, and the **mean tumour diameter** (2V)^(1/3) of the whole volume
  (Pallud/Mandonnet, the LGG growth measure; equivalent-sphere diameter is 0.985 times it).
- **Lesions** (3D connected components), **laterality** and **extent** (:mod:`.location`).

Without a spacing (the Kaggle layout), every mm/mL value is None and the pixel/voxel values stand alone.
An empty mask gives ``found = False``, zeros and None, never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lggdemo.measure.diameters import Diameter, bidimensional, max_diameter_3d, mean_diameter_mm
from lggdemo.measure.location import extent_voxels, label_lesions, laterality
from lggdemo.measure.volume import HIGH_THRESHOLD, LOW_THRESHOLD, RANGE_RULE, volume_range_voxels, voxel_ml

#: RANO-LGG: a lesion is measurable when both perpendicular diameters are at least this long.
MEASURABLE_MM = 10.0


class MeasureError(ValueError):
    """Inputs that cannot be measured (shapes that disagree, a spacing that is not positive); says which."""


@dataclass(frozen=True)
class Measurements:
    """One mask's measurements; see the module docstring. Slice indices are 0-based display slices."""

    spacing: tuple[float, float, float] | None  # (slice, row, column) mm, None when unknown
    volume_voxels: int
    volume_ml: float | None
    volume_range_voxels: tuple[int, int] | None  # (low, high); None without a probability map
    volume_range_ml: tuple[float, float] | None
    key_slice: int | None  # where the two diameters are measured
    longest: Diameter | None
    perpendicular: Diameter | None
    bidimensional_product_mm2: float | None
    bidimensional_product_px2: float | None  # in pixel units (square pixels), for inputs without a spacing
    measurable: bool | None  # RANO-LGG; None when the spacing is unknown
    max_diameter_3d_mm: float | None
    mean_diameter_mm: float | None
    lesions: int
    laterality: str  # "left" | "right" | "both" | "none"
    left_fraction: float | None  # of the tumour's voxels, on the patient's left
    extent_mm: tuple[float, float, float] | None  # (R-L, A-P, S-I), bounding box edge to edge
    extent_voxels: tuple[int, int, int]  # (columns, rows, slices), same order
    range_thresholds: tuple[float, float] = (LOW_THRESHOLD, HIGH_THRESHOLD)
    notes: tuple[str, ...] = field(default=())

    @property
    def found(self) -> bool:
        return self.volume_voxels > 0

    def summary(self) -> str:
        """One line for a caption or a log."""
        if not self.found:
            return "No tumour found."
        vol = f"{self.volume_ml:.1f} mL" if self.volume_ml is not None else f"{self.volume_voxels} voxels"
        if self.volume_range_ml is not None:
            vol += f" (range {self.volume_range_ml[0]:.1f}–{self.volume_range_ml[1]:.1f})"
        if self.longest is not None and self.longest.length_mm is not None and self.perpendicular is not None:
            bi = (f"; {self.longest.length_mm:.0f} × {self.perpendicular.length_mm:.0f} mm "
                  f"({'measurable' if self.measurable else 'not measurable'} by RANO-LGG)")
        else:
            bi = ""
        return f"{vol}{bi}; {self.lesions} lesion(s), {self.laterality}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: tuples as lists, floats rounded to what a measurement means (3 decimals of mm or mL)."""
        def r(v: float | None, nd: int = 3) -> float | None:
            return None if v is None else round(float(v), nd)

        return {
            "found": self.found,
            "spacing_mm": None if self.spacing is None else [r(s, 4) for s in self.spacing],
            "volume_voxels": self.volume_voxels, "volume_ml": r(self.volume_ml, 4),
            "volume_range_voxels": None if self.volume_range_voxels is None else list(self.volume_range_voxels),
            "volume_range_ml": None if self.volume_range_ml is None else [r(v, 4) for v in self.volume_range_ml],
            "volume_range_thresholds": list(self.range_thresholds), "volume_range_rule": RANGE_RULE,
            "key_slice": self.key_slice,
            "longest": None if self.longest is None else self.longest.to_dict(),
            "perpendicular": None if self.perpendicular is None else self.perpendicular.to_dict(),
            "bidimensional_product_mm2": r(self.bidimensional_product_mm2),
            "bidimensional_product_px2": r(self.bidimensional_product_px2),
            "measurable": self.measurable, "max_diameter_3d_mm": r(self.max_diameter_3d_mm),
            "mean_diameter_mm": r(self.mean_diameter_mm), "lesions": self.lesions, "laterality": self.laterality,
            "left_fraction": r(self.left_fraction, 4),
            "extent_mm": None if self.extent_mm is None else [r(v) for v in self.extent_mm],
            "extent_voxels": list(self.extent_voxels), "notes": list(self.notes),
        }


def _check(mask: np.ndarray, spacing: tuple[float, float, float] | None, probability: np.ndarray | None,
           head: np.ndarray | None) -> tuple[np.ndarray, tuple[float, float, float] | None]:
    m = np.asarray(mask)
    if m.ndim != 3:
        raise MeasureError(f"the mask must be (slices, rows, columns), got shape {m.shape}")
    for name, arr in (("probability", probability), ("head mask", head)):
        if arr is not None and np.shape(arr) != m.shape:
            raise MeasureError(f"the {name} {np.shape(arr)} does not match the mask {m.shape}")
    if spacing is not None:
        sp = tuple(float(s) for s in spacing)
        if len(sp) != 3 or not all(np.isfinite(s) and s > 0 for s in sp):
            raise MeasureError(f"the spacing must be three positive millimetre values, got {spacing}")
        return m > 0, sp  # type: ignore[return-value]
    return m > 0, None


def _empty(spacing: tuple[float, float, float] | None, probability: np.ndarray | None) -> Measurements:
    known = spacing is not None
    return Measurements(spacing=spacing, volume_voxels=0, volume_ml=0.0 if known else None,
                        volume_range_voxels=(0, 0) if probability is not None else None,
                        volume_range_ml=(0.0, 0.0) if probability is not None and known else None,
                        key_slice=None, longest=None, perpendicular=None, bidimensional_product_mm2=None,
                        bidimensional_product_px2=None, measurable=False if known else None,
                        max_diameter_3d_mm=None, mean_diameter_mm=None, lesions=0, laterality="none",
                        left_fraction=None, extent_mm=(0.0, 0.0, 0.0) if known else None, extent_voxels=(0, 0, 0),
                        notes=("no tumour found",))


def measure(mask: np.ndarray, spacing: tuple[float, float, float] | None, probability: np.ndarray | None = None,
            head: np.ndarray | None = None) -> Measurements:
    """(S, H, W) mask (bool or 0/1), spacing (slice, row, column) mm or None, optional (S, H, W) probability
    in [0, 1] (for the volume range) and head mask (for the midline) -> :class:`Measurements`.

    Raises :class:`MeasureError` for shapes that disagree or a non-positive spacing; an empty mask is a result.
    """
    m, sp = _check(mask, spacing, probability, head)
    if not m.any():
        return _empty(sp, probability)
    notes: list[str] = []
    unit_ml = voxel_ml(sp)
    n = int(m.sum())
    rng = volume_range_voxels(m, probability) if probability is not None else None
    labels, n_lesions = label_lesions(m)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    lesion = labels == int(np.argmax(sizes))
    if n_lesions > 1:
        notes.append(f"{n_lesions} lesions: the diameters are the largest lesion's")
    areas = lesion.reshape(len(lesion), -1).sum(axis=1)
    key = int(np.argmax(areas))  # ties: the lowest slice
    row_mm, col_mm = (sp[1], sp[2]) if sp is not None else (1.0, 1.0)
    (p0, p1, long_len), (q0, q1, perp_len) = bidimensional(lesion[key], row_mm, col_mm)
    if sp is None:
        long_px, perp_px = long_len, perp_len
    else:  # the same lines in pixel units
        long_px = float(np.linalg.norm(p1 - p0))
        perp_px = float(np.linalg.norm(q1 - q0))

    def line(a: np.ndarray, b: np.ndarray, mm: float, px: float) -> Diameter:
        return Diameter(key, (float(a[0]), float(a[1])), (float(b[0]), float(b[1])),
                        mm if sp is not None else None, px)

    longest, perpendicular = line(p0, p1, long_len, long_px), line(q0, q1, perp_len, perp_px)
    side, left = laterality(m, head)
    ext = extent_voxels(m)
    return Measurements(
        spacing=sp, volume_voxels=n, volume_ml=None if unit_ml is None else n * unit_ml,
        volume_range_voxels=rng,
        volume_range_ml=None if rng is None or unit_ml is None else (rng[0] * unit_ml, rng[1] * unit_ml),
        key_slice=key, longest=longest, perpendicular=perpendicular,
        bidimensional_product_mm2=None if sp is None else long_len * perp_len,
        bidimensional_product_px2=long_px * perp_px,
        measurable=None if sp is None else bool(long_len >= MEASURABLE_MM and perp_len >= MEASURABLE_MM),
        max_diameter_3d_mm=None if sp is None else max_diameter_3d(lesion, sp),
        mean_diameter_mm=None if unit_ml is None else mean_diameter_mm(n * unit_ml),
        lesions=n_lesions, laterality=side, left_fraction=left,
        extent_mm=None if sp is None else (ext[0] * sp[2], ext[1] * sp[1], ext[2] * sp[0]),
        extent_voxels=ext, notes=tuple(notes))
