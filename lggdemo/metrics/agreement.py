"""How well two ways of measuring the same patients agree: Bland–Altman limits and median absolute % error.

Used for a model's tumour volume and RANO-LGG product against the reference masks' (``lggdemo.evaluation``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class BlandAltman:
    """Bland & Altman (Lancet 1986): differences ``a - b`` per patient; bias their mean, the 95% limits of
    agreement bias ± 1.96 SD (sample SD, ddof 1). ``n`` pairs; SD and limits None for fewer than two."""

    bias: float
    sd: float | None
    loa_low: float | None
    loa_high: float | None
    n: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def bland_altman(a: Sequence[float], b: Sequence[float]) -> BlandAltman | None:
    """Bland–Altman of paired values (None when there is no pair)."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    if x.shape != y.shape:
        raise ValueError(f"paired values differ in length: {x.shape} vs {y.shape}")
    if len(x) == 0:
        return None
    d = x - y
    bias = float(d.mean())
    if len(d) < 2:
        return BlandAltman(bias, None, None, None, 1)
    sd = float(d.std(ddof=1))
    return BlandAltman(bias, sd, bias - 1.96 * sd, bias + 1.96 * sd, len(d))


def median_abs_pct_error(pct_errors: Sequence[float | None]) -> tuple[float | None, int]:
    """Median of |% error| over the defined values (a None: an empty reference, no % of it); and their count."""
    vals = np.abs(np.asarray([v for v in pct_errors if v is not None], float))
    return (float(np.median(vals)) if len(vals) else None), int(len(vals))
