"""Before and after a corrections fine-tune: did the corrected slices get fixed, and did other patients pay for it?

Measured by the trainer once, at the end of a ``--corrections`` run, and written into the card's
``segmentation.fine_tune``: the parent (``--init-from``) and the new U-Net on the same slices -- the corrected
ones (scored against the corrected masks) and every validation patient the run scores (per-volume Dice
against the truth). A correction that fixes one slice but hurts other patients is listed by name, not
averaged away. The Train page's Compare reads it from the card (no model runs for the numbers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lggdemo.metrics.segmentation import dice, per_volume_dice
from lggdemo.models.engine import Engine
from lggdemo.models.forward import predict_patient_masks, segment_slices
from lggdemo.models.weights import WeightsError, load_card, load_segmentation
from lggdemo.train.prepare import Prepared
from lggdemo.train.scoring import scoring_engine

#: A validation patient whose per-volume Dice fell by more than this is listed as worse after fine-tuning.
WORSE_BY = 0.01


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def fine_tune_report(parent_dir: Path, new_engine: Engine, seg_cfg: Any, prep: Prepared,
                     val_after: np.ndarray | None) -> dict[str, Any]:
    """The card's ``fine_tune`` section: before/after on the corrected slices and on the validation patients.

    ``val_after`` is the new U-Net's masks on ``prep.validation_selection()`` (the pipeline has them already).
    """
    if prep.corrections is None:
        raise ValueError("fine_tune_report needs a run with --corrections")
    device = prep.device
    try:
        parent, parent_cfg = load_segmentation(parent_dir, device)
        parent_version = load_card(parent_dir).version
    except WeightsError as exc:
        return {"error": f"the parent U-Net could not be loaded for the comparison: {exc}"}

    # Both U-Nets on the engine the app runs (``new_engine``: the one the pipeline scored the new U-Net with).
    parent_engine = scoring_engine(device, seg=parent, seg_size=parent_cfg.image_size)
    fixed = prep.corrections.arrays(256)
    before = segment_slices(parent_engine, parent_cfg, fixed.images)[0]
    after = segment_slices(new_engine, seg_cfg, fixed.images)[0]
    slices = [{"id": cid, "patient": str(pid), "source_slice": src, "corrected_area_px": int(m.sum()),
               "before": round(dice(b, m), 4), "after": round(dice(a, m), 4),
               "before_area_px": int(b.sum()), "after_area_px": int(a.sum())}
              for cid, pid, src, m, b, a in zip(prep.corrections.ids, fixed.patient_ids, prep.corrections.source_slices,
                                                fixed.masks, before, after)]

    sel = prep.validation_selection()
    ids, truth = prep.arrays_256.patient_ids[sel], prep.arrays_256.masks[sel]
    patients: list[dict[str, Any]] = []
    if sel.any() and val_after is not None:
        val_before = predict_patient_masks(parent_engine, parent_cfg, prep.arrays_256.images[sel], ids)
        per_before, per_after = per_volume_dice(val_before, truth, ids), per_volume_dice(val_after, truth, ids)
        patients = [{"patient": p, "before": round(per_before[p], 4), "after": round(per_after[p], 4),
                     "change": round(per_after[p] - per_before[p], 4)} for p in per_before]
    worse = [row["patient"] for row in patients if row["change"] < -WORSE_BY]
    if patients:
        note = ""
    elif not prep.split.val:
        note = ("The weights it started from trained on every patient, so no patient is unseen by both U-Nets: only "
                "the corrected slices are compared. Score both on patients neither saw with lggdemo-evaluate.")
    else:
        note = "Every validation patient had a correction cut from it (its slice was trained on), so none was scored."
    return {
        "parent": {"folder": str(parent_dir), "version": parent_version},
        "corrected_slices": {"scored_against": "the corrected masks (slice rule: 2D clean-up only)",
                             "mean_before": _mean([s["before"] for s in slices]),
                             "mean_after": _mean([s["after"] for s in slices]), "slices": slices},
        "validation": {"scored_against": "the ground truth, per-volume Dice (whole-patient rule)",
                       "mean_before": _mean([p["before"] for p in patients]),
                       "mean_after": _mean([p["after"] for p in patients]), "patients": patients,
                       "worse": worse, "worse_by": WORSE_BY, "note": note,
                       "left_out": list(prep.corrections.held_back)},
    }
