"""The reports a prediction is saved as: one schema for slice and whole-patient results, as JSON and CSV.

Both kinds carry the patient-level grade under the same names, from :class:`PatientGrade`:
``p_g3`` (what the page shows: calibrated when the card records a calibration; null when the card withholds it),
``raw_score`` (the model's sigmoid output) and ``grade_note``; and the same ``dice``, ``model_version`` and
``device``. Every number is rounded here, once.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from lggdemo import NOT_FOR_DIAGNOSIS, __version__
from lggdemo.data.imageio import SLICE_SIZE
from lggdemo.inference.grade import GRADE_CAVEAT, PatientGrade
from lggdemo.inference.predictor import PredictionResult
from lggdemo.inference.wholepatient import VolumePrediction
from lggdemo.patient.volume import Volume

#: Patient-level grade fields, the same in every report.
GRADE_COLUMNS = ("p_g3", "raw_score", "grade_note")
SLICE_COLUMNS = ("file", "tumour_area_px", "tumour_pct_of_brain", "dice", "slice_p_g3", "slice_raw_score",
                 *GRADE_COLUMNS, "model_version", "device")
PATIENT_COLUMNS = ("input", "kind", "slices", "spacing_mm", "tumour_voxels", "tumour_ml", "tumour_slices",
                   "dice", "truth_voxels", *GRADE_COLUMNS, "model_version", "device", "error")


def rounded(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(float(x), digits)


def grade_fields(grade: PatientGrade | None) -> dict[str, Any]:
    """``p_g3``, ``raw_score`` and ``grade_note`` of one patient (all null when there is no prediction)."""
    if grade is None:
        return dict.fromkeys(GRADE_COLUMNS)
    return {"p_g3": rounded(grade.shown_p_g3), "raw_score": rounded(grade.raw_score), "grade_note": grade.text}


def slice_rows(result: PredictionResult) -> list[dict[str, Any]]:
    """One row per slice; a slice's own P(G3) is withheld whenever the patient's is, or is calibrated."""
    shown = result.grade.shows_slice_p_g3
    patient = grade_fields(result.grade)
    return [
        {
            "file": s.name,
            "tumour_area_px": s.area_px,
            "tumour_pct_of_brain": rounded(s.area_pct_brain, 3),
            "dice": rounded(s.dice),
            "slice_p_g3": rounded(s.grade_prob) if shown else None,
            "slice_raw_score": rounded(s.grade_prob),
            **patient,
            "model_version": result.model_version,
            "device": result.device,
        }
        for s in result.slices
    ]


def slice_report_json(result: PredictionResult) -> bytes:
    c = result.clinical
    doc = {
        "lggdemo_version": __version__,
        "model_version": result.model_version,
        "device": result.device,
        "clinical": None if c is None else {"age": c.age, "sex": c.sex},
        **grade_fields(result.grade),
        "area_units": f"pixels at {SLICE_SIZE}x{SLICE_SIZE}",
        "grade_caveat": GRADE_CAVEAT,
        "slices": slice_rows(result),
        "disclaimer": NOT_FOR_DIAGNOSIS,
    }
    return _json(doc)


def slice_report_csv(result: PredictionResult) -> bytes:
    return _csv(slice_rows(result), SLICE_COLUMNS)


def patient_row(volume: Volume | None, prediction: VolumePrediction | None, *, name: str = "",
                error: str | None = None) -> dict[str, Any]:
    """One patient as a flat row (CSV and the JSON ``patients`` list); an input that failed keeps its error."""
    p, v = prediction, volume
    return {
        "input": v.name if v is not None else name,
        "kind": v.provenance.kind if v is not None else None,
        "slices": v.n_slices if v is not None else None,
        "spacing_mm": None if v is None or v.spacing is None else [round(s, 4) for s in v.spacing],
        "tumour_voxels": p.tumour_voxels if p else None,
        "tumour_ml": rounded(p.tumour_ml, 3) if p else None,
        "tumour_slices": list(p.tumour_slices) if p else None,
        "dice": rounded(p.dice) if p else None,
        "truth_voxels": p.truth_voxels if p else None,
        **grade_fields(p.grade if p else None),
        "model_version": p.model_version if p else None,
        "device": p.device if p else None,
        "error": error,
    }


def patient_report_document(rows: Sequence[dict[str, Any]],
                            notes: dict[str, Sequence[str]] | None = None) -> dict[str, Any]:
    return {
        "lggdemo_version": __version__,
        "volume_units": "tumour_voxels: voxels of the 256x256 slices; tumour_ml: millilitres from the input's voxel "
                        "spacing (null when the input records none, e.g. the Kaggle layout)",
        "grade_caveat": GRADE_CAVEAT,
        "patients": list(rows),
        "notes": {k: list(v) for k, v in (notes or {}).items()},
        "disclaimer": NOT_FOR_DIAGNOSIS,
    }


def patient_report_json(rows: Sequence[dict[str, Any]], notes: dict[str, Sequence[str]] | None = None) -> bytes:
    return _json(patient_report_document(rows, notes))


def patient_report_csv(rows: Sequence[dict[str, Any]]) -> bytes:
    return _csv(rows, PATIENT_COLUMNS)


def _json(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2) + "\n").encode()


def _csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> bytes:
    """Empty cells for null; a list (tumour slices, spacing) as space-separated values."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else (" ".join(map(str, row[k])) if isinstance(row[k], list)
                                                           else row[k]) for k in columns})
    return buf.getvalue().encode()
