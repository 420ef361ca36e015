"""The change table: two visits' measurements side by side, the change, the RANO categories, and whether the
change is larger than what the model can measure.

Both visits are measured on the **baseline grid**: the follow-up's mask (and probability) is first put there through
the registration (nearest neighbour, linear), so the two bidimensional products are taken in the same axial plane
and a head tilted differently at the second visit does not read as growth. The follow-up's volume on its own grid is
kept beside it as a check (a rigid resampling should not change a volume by more than a few voxels).

**What change the model can see.** A measured change is only a change when it is larger than the error of
measuring it. Two ways to know that error, the better first:

1. the **error model** (:class:`ErrorModel`): the 95 % limits of the error of the measured volume (and product)
   ratio, measured out of fold on synthetic follow-ups of known growth (``docs/experiments/longitudinal-*.md``);
2. without one, the two visits' **volume ranges** (the volume at probability thresholds 0.3 and 0.7): a change
   counts only when the ranges do not overlap.

Why a small tumour's percentage is fragile: the error of a mask lives on its boundary, and a boundary one millimetre
further out makes a 10 mm lesion 12 mm across -- 73 % more volume -- while the same millimetre on a 50 mm tumour is
12 %; the table states that figure for the baseline tumour's own size.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lggdemo.longitudinal.rano import IMAGING_ONLY, Category, percent_change, rano2_volume, rano_lgg
from lggdemo.measure import Measurements

DAYS_PER_YEAR = 365.25
#: The error model the app ships: written by the longitudinal experiment from out-of-fold masks.
ERROR_MODEL_FILE = Path(__file__).with_name("error_model.json")


class ChangeError(ValueError):
    """Inputs a change table cannot be made from (a follow-up dated before its baseline, an unreadable error model)."""


@dataclass(frozen=True)
class ErrorModel:
    """95 % limits of (measured log ratio - true log ratio), for the volume and the product, out of fold.

    A measured ratio ``r`` is "beyond measurement error" when ``log r`` lies outside ``[low, high]``: no true
    ratio of 1 (no change) could have been measured as ``r`` within the limits.
    """

    volume_log_limits: tuple[float, float]
    product_log_limits: tuple[float, float]
    source: str  # where it was measured (the experiment's file), said on every table that uses it
    n: int  # pairs it was measured on

    @classmethod
    def load(cls, path: Path = ERROR_MODEL_FILE) -> ErrorModel | None:
        """The shipped model, or None when there is none (the table then uses the volume ranges)."""
        if not Path(path).is_file():
            return None
        try:
            d = json.loads(Path(path).read_text())
            return cls(tuple(d["volume_log_limits"]), tuple(d["product_log_limits"]), str(d["source"]),  # type: ignore[arg-type]
                       int(d["n"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ChangeError(f"{path}: not a readable error model ({exc}).") from exc

    def to_dict(self) -> dict[str, Any]:
        return {"volume_log_limits": [round(v, 5) for v in self.volume_log_limits],
                "product_log_limits": [round(v, 5) for v in self.product_log_limits], "source": self.source, "n": self.n}

    def pct_limits(self, which: str = "volume") -> tuple[float, float]:
        lo, hi = self.volume_log_limits if which == "volume" else self.product_log_limits
        return 100.0 * (math.exp(lo) - 1.0), 100.0 * (math.exp(hi) - 1.0)


@dataclass(frozen=True)
class Visit:
    """One visit: its name, date and the measurements of its mask on the baseline grid."""

    label: str  # "baseline" | "follow-up"
    name: str
    date: dt.date | None
    date_source: str  # "DICOM StudyDate" | "folder name" | "entered" | "unknown"
    measurements: Measurements


@dataclass(frozen=True)
class Verdict:
    """Is the change beyond what the model can measure? ``beyond`` is None when it cannot be told."""

    beyond: bool | None
    method: str  # "error model" | "volume ranges" | "none"
    text: str


@dataclass(frozen=True)
class ChangeTable:
    baseline: Visit
    followup: Visit
    followup_native_volume_voxels: int  # the follow-up mask on its own grid (a check on the resampling)
    followup_native_volume_ml: float | None
    volume_unit: str  # "mL" | "voxels"
    volume: tuple[float, float]
    volume_range: tuple[tuple[float, float] | None, tuple[float, float] | None]
    volume_change: float
    volume_change_pct: float | None
    product_unit: str  # "mm²" | "px²"
    product: tuple[float | None, float | None]
    product_change_pct: float | None
    mean_diameter_mm: tuple[float | None, float | None]
    interval_days: int | None
    growth_rate_mm_per_year: float | None
    growth_note: str
    rano_lgg: Category
    rano2: Category
    volume_verdict: Verdict
    product_verdict: Verdict
    fragility: str
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        def r(v: float | None, nd: int = 3) -> float | None:
            return None if v is None else round(float(v), nd)

        def visit(v: Visit) -> dict[str, Any]:
            return {"name": v.name, "date": None if v.date is None else v.date.isoformat(), "date_source": v.date_source,
                    "measurements": v.measurements.to_dict()}

        return {
            "baseline": visit(self.baseline), "followup": visit(self.followup),
            "followup_native_volume_voxels": self.followup_native_volume_voxels,
            "followup_native_volume_ml": r(self.followup_native_volume_ml, 4),
            "volume_unit": self.volume_unit, "volume": [r(v, 4) for v in self.volume],
            "volume_range": [None if x is None else [r(v, 4) for v in x] for x in self.volume_range],
            "volume_change": r(self.volume_change, 4), "volume_change_pct": r(self.volume_change_pct, 2),
            "product_unit": self.product_unit, "product": [r(v, 2) for v in self.product],
            "product_change_pct": r(self.product_change_pct, 2),
            "mean_diameter_mm": [r(v, 2) for v in self.mean_diameter_mm], "interval_days": self.interval_days,
            "growth_rate_mm_per_year": r(self.growth_rate_mm_per_year, 2), "growth_note": self.growth_note,
            "rano_lgg": self.rano_lgg.to_dict(), "rano2_volume": self.rano2.to_dict(),
            "volume_beyond_error": {"beyond": self.volume_verdict.beyond, "method": self.volume_verdict.method,
                                    "text": self.volume_verdict.text},
            "product_beyond_error": {"beyond": self.product_verdict.beyond, "method": self.product_verdict.method,
                                     "text": self.product_verdict.text},
            "fragility": self.fragility, "imaging_only": IMAGING_ONLY, "notes": list(self.notes),
        }

    def rows(self) -> list[dict[str, str]]:
        """The table as a person reads it: one row per measure, baseline / follow-up / change (strings)."""
        def f(v: float | None, nd: int = 1) -> str:
            return "n/a" if v is None else f"{v:.{nd}f}"

        def rng(x: tuple[float, float] | None, nd: int = 1) -> str:
            return "" if x is None else f" ({x[0]:.{nd}f}–{x[1]:.{nd}f})"

        nd = 1 if self.volume_unit == "mL" else 0
        pct = "n/a" if self.volume_change_pct is None else f"{self.volume_change_pct:+.1f} %"
        rows = [
            {"measure": f"Volume, {self.volume_unit} (range)",
             "baseline": f(self.volume[0], nd) + rng(self.volume_range[0], nd),
             "follow-up": f(self.volume[1], nd) + rng(self.volume_range[1], nd),
             "change": f"{self.volume_change:+.{nd}f} {self.volume_unit} ({pct})"},
            {"measure": f"Bidimensional product, {self.product_unit}", "baseline": f(self.product[0], 0),
             "follow-up": f(self.product[1], 0),
             "change": "n/a" if self.product_change_pct is None else f"{self.product_change_pct:+.1f} %"},
            {"measure": "Mean tumour diameter, mm", "baseline": f(self.mean_diameter_mm[0]),
             "follow-up": f(self.mean_diameter_mm[1]),
             "change": "n/a" if self.growth_rate_mm_per_year is None else f"{self.growth_rate_mm_per_year:+.1f} mm/year"},
            {"measure": "RANO-LGG (product; imaging only)", "baseline": "", "follow-up": "",
             "change": self.rano_lgg.category or "cannot be told"},
            {"measure": "RANO 2.0 (volume; imaging only)", "baseline": "", "follow-up": "",
             "change": self.rano2.category or "cannot be told"},
            {"measure": "Beyond measurement error (volume)", "baseline": "", "follow-up": "",
             "change": {True: "yes", False: "no", None: "cannot be told"}[self.volume_verdict.beyond]},
        ]
        return rows


def change_table(baseline: Visit, followup: Visit, *, followup_native: Measurements,
                 error_model: ErrorModel | None = None) -> ChangeTable:
    """The table from two visits measured on the baseline grid (``followup_native``: on its own, as a check)."""
    mb, mf = baseline.measurements, followup.measurements
    notes: list[str] = []
    in_ml = mb.volume_ml is not None and mf.volume_ml is not None
    if in_ml:
        vol = (float(mb.volume_ml), float(mf.volume_ml))  # type: ignore[arg-type]
        ranges = (mb.volume_range_ml, mf.volume_range_ml)
    else:
        vol = (float(mb.volume_voxels), float(mf.volume_voxels))
        ranges = tuple(None if m.volume_range_voxels is None else tuple(map(float, m.volume_range_voxels))  # type: ignore[misc]
                       for m in (mb, mf))
        notes.append("No voxel spacing: volumes are in voxels of the baseline grid and the products in pixels²; "
                     "the % changes and the categories do not need the spacing, the mm and mL values do.")
    in_mm = mb.bidimensional_product_mm2 is not None and mf.bidimensional_product_mm2 is not None
    product = ((mb.bidimensional_product_mm2, mf.bidimensional_product_mm2) if in_mm
               else (mb.bidimensional_product_px2, mf.bidimensional_product_px2))
    product = tuple(0.0 if (p is None and not m.found) else p for p, m in zip(product, (mb, mf)))  # type: ignore[assignment]
    interval = None
    if baseline.date is not None and followup.date is not None:
        interval = (followup.date - baseline.date).days
        if interval < 0:
            raise ChangeError(f"the follow-up ({followup.date}) is dated before the baseline ({baseline.date}).")
    mtd = (mb.mean_diameter_mm, mf.mean_diameter_mm)
    rate, growth_note = _growth_rate(mtd, interval)
    vol_pct = percent_change(vol[0], vol[1])
    return ChangeTable(
        baseline=baseline, followup=followup, followup_native_volume_voxels=followup_native.volume_voxels,
        followup_native_volume_ml=followup_native.volume_ml, volume_unit="mL" if in_ml else "voxels", volume=vol,
        volume_range=ranges, volume_change=vol[1] - vol[0], volume_change_pct=vol_pct,  # type: ignore[arg-type]
        product_unit="mm²" if in_mm else "px²", product=product, product_change_pct=percent_change(*product),
        mean_diameter_mm=mtd, interval_days=interval, growth_rate_mm_per_year=rate, growth_note=growth_note,
        rano_lgg=rano_lgg(product[0], product[1], followup_found=mf.found),
        rano2=rano2_volume(vol[0], vol[1], followup_found=mf.found),
        volume_verdict=_verdict(vol, ranges, error_model, "volume"),  # type: ignore[arg-type]
        product_verdict=_verdict(product, (None, None), error_model, "product"),  # type: ignore[arg-type]
        fragility=fragility_sentence(mtd[0]), notes=tuple(notes))


def _growth_rate(mtd: tuple[float | None, float | None], interval: int | None) -> tuple[float | None, str]:
    if mtd[0] is None or mtd[1] is None:
        return None, "The growth rate needs the voxel spacing (the mean diameter is in mm); this input records none."
    if interval is None:
        return None, "The growth rate needs both visits' dates: enter them (DICOM gives its StudyDate)."
    if interval == 0:
        return None, "Both visits have the same date: no growth rate."
    rate = (mtd[1] - mtd[0]) / (interval / DAYS_PER_YEAR)
    return rate, (f"Mean tumour diameter (2V)^(1/3) changed {mtd[1] - mtd[0]:+.1f} mm in {interval} days: "
                  f"{rate:+.1f} mm/year (untreated LGG grow about 4 mm/year on average, Mandonnet 2003).")


def _verdict(values: tuple[float | None, float | None], ranges: tuple[tuple[float, float] | None, ...],
             model: ErrorModel | None, which: str) -> Verdict:
    a, b = values
    if a is None or b is None:
        return Verdict(None, "none", f"The {which} is missing at one visit: the change cannot be judged.")
    if a == 0 and b == 0:
        return Verdict(False, "none", "No tumour found at either visit.")
    if a == 0 or b == 0:
        return Verdict(True, "none", f"Tumour found at one visit only: a change beyond any {which} error.")
    ratio = math.log(b / a)
    if model is not None:
        lo, hi = model.volume_log_limits if which == "volume" else model.product_log_limits
        plo, phi = model.pct_limits(which)
        beyond = not (lo <= ratio <= hi)
        return Verdict(beyond, "error model", (
            f"The measured {which} change ({100 * (b / a - 1):+.1f} %) is {'outside' if beyond else 'within'} the "
            f"95 % limits of the model's error for a {which} change ({plo:+.1f} % to {phi:+.1f} %, measured out of "
            f"fold on {model.n} synthetic pairs of known growth, {model.source}): "
            f"{'a change the model can see' if beyond else 'not a change the model can tell from its own error'}."))
    if which == "volume" and ranges[0] is not None and ranges[1] is not None:
        (l0, h0), (l1, h1) = ranges  # type: ignore[misc]
        beyond = l1 > h0 or h1 < l0
        return Verdict(beyond, "volume ranges", (
            f"The two visits' volume ranges (probability 0.3 to 0.7) {'do not overlap' if beyond else 'overlap'}: "
            f"{'a change beyond' if beyond else 'no change beyond'} the model's own uncertainty."))
    return Verdict(None, "none", f"No error model and no ranges for the {which}: the change cannot be judged.")


def fragility_sentence(mean_diameter_mm: float | None) -> str:
    """Why a percentage change is fragile for a small tumour, with this tumour's own figure when its size is known."""
    general = ("A small tumour's % change is fragile: a mask's error sits on its boundary, and 1 mm more boundary "
               "makes a 10 mm lesion 12 mm across, 73 % more volume.")
    if mean_diameter_mm is None or mean_diameter_mm <= 0:
        return general
    r = mean_diameter_mm / 2.0
    pct = 100.0 * (((r + 1.0) / r) ** 3 - 1.0)
    return f"{general} For this tumour (mean diameter {mean_diameter_mm:.0f} mm) 1 mm of boundary is {pct:.0f} % of volume."


def visit_date(volume_extra: dict[str, object], name: str) -> tuple[dt.date | None, str]:
    """A visit's date from what the reader kept: DICOM StudyDate (empty or absent is allowed: Type 2), else a
    ``_YYYYMMDD`` ending of the input's name (the Kaggle folders are named ``<site>_<patient>_<scan date>``)."""
    for ds in volume_extra.get("dicom_sources") or ():  # type: ignore[union-attr]
        raw = str(getattr(ds, "StudyDate", "") or "").strip()
        parsed = _parse_date(raw)
        if parsed is not None:
            return parsed, "DICOM StudyDate"
    tail = name.rsplit("_", 1)[-1] if "_" in name else ""
    parsed = _parse_date(tail)
    return (parsed, "folder name") if parsed is not None else (None, "unknown")


def _parse_date(raw: str) -> dt.date | None:
    if len(raw) != 8 or not raw.isdigit():
        return None
    try:
        d = dt.date(int(raw[:4]), int(raw[4:6]), int(raw[6:]))
    except ValueError:
        return None
    return d if 1900 <= d.year <= 2100 else None
