"""Platt scaling as the app applies it: P(G3) = sigmoid(a * logit + b). Numpy only, so the app never loads
sklearn to show a number; the fit (sklearn) is ``metrics.grade.fit_platt``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Platt:
    """Platt scaling of a patient logit, fitted on ``n`` patients."""

    a: float
    b: float
    n: int

    def apply(self, logits: Sequence[float] | np.ndarray | float) -> np.ndarray:
        z = self.a * np.asarray(logits, float) + self.b
        return 1.0 / (1.0 + np.exp(-z))

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "n": self.n}

    @classmethod
    def from_dict(cls, value: Any) -> Platt | None:
        """The calibration a card records (``grade.calibration``); None when missing or malformed."""
        if not isinstance(value, Mapping):
            return None
        try:
            a, b, n = float(value["a"]), float(value["b"]), int(value["n"])
        except (KeyError, TypeError, ValueError):
            return None
        return cls(a, b, n) if math.isfinite(a) and math.isfinite(b) and n > 0 else None
