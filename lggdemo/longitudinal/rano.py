"""Response categories from a change in size: RANO-LGG by the bidimensional product, RANO 2.0 by the volume.

Imaging criterion only. Both schemes also need what this app never sees -- new lesions elsewhere, new or more
contrast enhancement, the steroid dose and the clinical state -- and a response must be confirmed on a later scan
(at least 4 weeks). A category here is what the size change alone would give, labelled as such everywhere.

- **RANO-LGG** (van den Bent et al., Lancet Oncol 2011), on the T2/FLAIR bidimensional product against the
  baseline: complete response = the lesion gone; partial response >= 50 % decrease; minor response >= 25 % but
  < 50 % decrease; progression >= 25 % increase; stable disease otherwise.
- **RANO 2.0** (Wen et al., J Clin Oncol 2023) allows volumes: progression >= 40 % volume increase, partial
  response >= 65 % volume decrease (the volumes a sphere has at 25 % more and 50 % less product). Its minor
  response band for non-enhancing tumours is taken here as the 2D band converted the same way (25 % less product
  = a 35 % volume decrease): 35 % to < 65 % decrease.
"""

from __future__ import annotations

from dataclasses import dataclass

IMAGING_ONLY = ("imaging criterion only: new lesions, contrast enhancement, steroids and the clinical state are not "
                "seen by the app, and a response needs confirming on a later scan")
CATEGORIES = ("complete response", "partial response", "minor response", "stable disease", "progression")

# (lower bound of the % change, category) for decreases, and the progression threshold
LGG_PROGRESSION_PCT = 25.0
LGG_PARTIAL_PCT = -50.0
LGG_MINOR_PCT = -25.0
V2_PROGRESSION_PCT = 40.0
V2_PARTIAL_PCT = -65.0
V2_MINOR_PCT = -35.0


@dataclass(frozen=True)
class Category:
    """One scheme's category for one change."""

    scheme: str  # "RANO-LGG (bidimensional product)" | "RANO 2.0 (volume)"
    category: str | None  # one of CATEGORIES; None when it cannot be decided (no tumour at baseline, no value)
    change_pct: float | None
    rule: str  # the thresholds, in words
    note: str = IMAGING_ONLY

    def to_dict(self) -> dict[str, object]:
        return {"scheme": self.scheme, "category": self.category,
                "change_pct": None if self.change_pct is None else round(self.change_pct, 2),
                "rule": self.rule, "note": self.note}


def _categorise(change_pct: float | None, gone: bool, progression: float, partial: float, minor: float) -> str | None:
    if gone:
        return "complete response"
    if change_pct is None:
        return None
    if change_pct >= progression:
        return "progression"
    if change_pct <= partial:
        return "partial response"
    if change_pct <= minor:
        return "minor response"
    return "stable disease"


def rano_lgg(baseline_product: float | None, followup_product: float | None, *, followup_found: bool) -> Category:
    """RANO-LGG from the two bidimensional products (any one unit: mm² or px²)."""
    rule = (f"product change >= +{LGG_PROGRESSION_PCT:g} % progression; <= {LGG_PARTIAL_PCT:g} % partial response; "
            f"<= {LGG_MINOR_PCT:g} % minor response; lesion gone: complete response; else stable disease")
    change = percent_change(baseline_product, followup_product)
    gone = bool(baseline_product) and not followup_found
    return Category("RANO-LGG (bidimensional product)",
                    _categorise(change, gone, LGG_PROGRESSION_PCT, LGG_PARTIAL_PCT, LGG_MINOR_PCT), change, rule)


def rano2_volume(baseline_volume: float | None, followup_volume: float | None, *, followup_found: bool) -> Category:
    """RANO 2.0's volumetric category from the two volumes (mL or voxels: the ratio is what counts)."""
    rule = (f"volume change >= +{V2_PROGRESSION_PCT:g} % progression; <= {V2_PARTIAL_PCT:g} % partial response; "
            f"<= {V2_MINOR_PCT:g} % minor response (the 2D band converted); lesion gone: complete response; "
            "else stable disease")
    change = percent_change(baseline_volume, followup_volume)
    gone = bool(baseline_volume) and not followup_found
    return Category("RANO 2.0 (volume)", _categorise(change, gone, V2_PROGRESSION_PCT, V2_PARTIAL_PCT, V2_MINOR_PCT),
                    change, rule)


def percent_change(before: float | None, after: float | None) -> float | None:
    """100 (after - before) / before; None when either is missing or ``before`` is 0 (a change from nothing has no %)."""
    if before is None or after is None or before == 0:
        return None
    return 100.0 * (float(after) - float(before)) / float(before)
