"""Two studies of one patient -> one :class:`Comparison`: the registration, both masks on the baseline grid, the
change map and the change table. The page (``ui/compare.py``) and ``lggdemo-compare`` both call
:func:`compare`; tests and the experiment call :func:`compare_masks` with masks they already have (truth masks, or
a fold model's).

Order of work, and why: register first (cheap, and a pair that does not register is refused before two
segmentations are spent on it); segment each study on its own grid (the model sees the slices it was trained on,
never interpolated ones); then move the follow-up's mask (nearest neighbour) and probability (linear) onto the
baseline grid with the registration's transform, and measure both visits there.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lggdemo.longitudinal.change import ChangeTable, ErrorModel, Visit, change_table, visit_date
from lggdemo.longitudinal.register import (
    Registration,
    RegistrationConfig,
    head_region,
    register,
    resample_mask,
    resample_to_baseline,
    resample_volume_slices,
)
from lggdemo.measure import measure
from lggdemo.patient.volume import Volume

ProgressFn = Callable[[float, str], None]
NEW, GONE = 1, -1  # values of the change map


@dataclass(frozen=True)
class Comparison:
    """Everything the page, the CLI and the PDF show about a pair, on the baseline grid (S, 256, 256)."""

    baseline: Volume
    followup: Volume
    registration: Registration
    followup_on_baseline: np.ndarray  # (S, 256, 256, 3) uint8: the follow-up's slices resampled (linear)
    baseline_mask: np.ndarray  # (S, 256, 256) uint8
    followup_mask: np.ndarray  # (S, 256, 256) uint8, resampled (nearest)
    followup_mask_native: np.ndarray  # (S', 256, 256) uint8 on the follow-up's own grid
    change_map: np.ndarray  # (S, 256, 256) int8: NEW where only the follow-up has tumour, GONE where only the baseline
    table: ChangeTable
    model_version: str | None = None  # the weights that drew both masks (None: masks given, e.g. truth)

    def to_dict(self) -> dict[str, object]:
        return {"baseline": self.baseline.name, "followup": self.followup.name, "model_version": self.model_version,
                "registration": self.registration.to_dict(), "change": self.table.to_dict(),
                "new_voxels": int((self.change_map == NEW).sum()), "gone_voxels": int((self.change_map == GONE).sum())}


def change_map(baseline_mask: np.ndarray, followup_mask: np.ndarray) -> np.ndarray:
    """(S, H, W) int8: +1 where tissue is new at follow-up, -1 where it is gone, 0 elsewhere."""
    b, f = np.asarray(baseline_mask) > 0, np.asarray(followup_mask) > 0
    out = np.zeros(b.shape, np.int8)
    out[f & ~b] = NEW
    out[b & ~f] = GONE
    return out


def compare_masks(baseline: Volume, followup: Volume, registration: Registration, baseline_mask: np.ndarray,
                  followup_mask: np.ndarray, *, baseline_probability: np.ndarray | None = None,
                  followup_probability: np.ndarray | None = None, dates: tuple[dt.date | None, dt.date | None] = (None, None),
                  error_model: ErrorModel | None = None, model_version: str | None = None,
                  followup_on_baseline: np.ndarray | None = None) -> Comparison:
    """A pair already registered and segmented -> the comparison; ``dates`` (entered) fill in what the inputs lack.

    ``followup_on_baseline``: the follow-up's slices already resampled (``Comparison.followup_on_baseline`` of the
    same pair), so a second comparison of one pair (truth masks beside the model's) does not resample them again.
    """
    mask_b = (np.asarray(baseline_mask) > 0).astype(np.uint8)
    mask_f_native = (np.asarray(followup_mask) > 0).astype(np.uint8)
    mask_f = resample_mask(mask_f_native, baseline, registration)
    prob_f = None
    if followup_probability is not None:
        prob_f = resample_to_baseline(np.asarray(followup_probability, np.float32), registration.spacing_followup,
                                      baseline.slices.shape[:3], registration.spacing_baseline, registration.matrix,
                                      nearest=False)
    head = head_region(baseline)
    m_b = measure(mask_b, baseline.spacing, None if baseline_probability is None
                  else np.asarray(baseline_probability, np.float32), head)
    m_f = measure(mask_f, baseline.spacing, prob_f, head)
    m_native = measure(mask_f_native, followup.spacing)
    visits = []
    for label, volume, m, entered in (("baseline", baseline, m_b, dates[0]), ("follow-up", followup, m_f, dates[1])):
        found, source = visit_date(volume.extra, volume.name)
        if found is None and entered is not None:
            found, source = entered, "entered"
        visits.append(Visit(label, volume.name, found, source, m))
    table = change_table(visits[0], visits[1], followup_native=m_native, error_model=error_model)
    return Comparison(baseline=baseline, followup=followup, registration=registration,
                      followup_on_baseline=(resample_volume_slices(followup, baseline, registration)
                                            if followup_on_baseline is None else followup_on_baseline),
                      baseline_mask=mask_b, followup_mask=mask_f, followup_mask_native=mask_f_native,
                      change_map=change_map(mask_b, mask_f), table=table, model_version=model_version)


def compare(predictor, baseline: Volume, followup: Volume, *,  # predictor: inference.predictor.Predictor
            dates: tuple[dt.date | None, dt.date | None] = (None, None), error_model: ErrorModel | None = None,
            config: RegistrationConfig = RegistrationConfig(), progress: ProgressFn | None = None) -> Comparison:
    """Register, segment both studies with ``predictor`` (the whole-patient path), compare.

    Raises ``register.RegistrationError`` for a pair that does not register (before any segmentation).
    """
    from lggdemo.inference.wholepatient import predict_volume

    report = progress or (lambda _f, _m: None)
    report(0.0, "Registering the follow-up onto the baseline")
    registration = register(baseline, followup, config)

    def part(lo: float, hi: float, label: str) -> ProgressFn:
        return lambda f, msg: report(lo + (hi - lo) * f, f"{label}: {msg}")

    base = predict_volume(predictor, baseline, None, progress=part(0.25, 0.6, "Baseline"))
    follow = predict_volume(predictor, followup, None, progress=part(0.6, 0.95, "Follow-up"))
    report(0.95, "Measuring the change")
    out = compare_masks(baseline, followup, registration, base.mask, follow.mask,
                        baseline_probability=base.probability.astype(np.float32),
                        followup_probability=follow.probability.astype(np.float32), dates=dates,
                        error_model=error_model, model_version=predictor.version)
    report(1.0, "Done")
    return out
