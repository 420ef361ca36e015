"""The reports a prediction is saved as: one schema for slice and whole-patient results, as JSON and CSV.

Both kinds carry the patient-level grade under the same names, from :class:`PatientGrade`:
``p_g3`` (what the page shows: calibrated when the card records a calibration; null when the card withholds it),
``raw_score`` (the model's sigmoid output) and ``grade_note``; and the same ``dice``, ``model_version`` and
``device``. Every number is rounded here, once, to the digits :data:`DIGITS` names: the PDF report
(``lggdemo.report``) prints the same numbers with the same digits, read from these rows, never recomputed.

A whole patient's row also carries its clinical measurements (:func:`measure_study`, ``lggdemo.measure``): the
volume's range, the RANO-LGG diameters and product, the 3D and mean diameters, lesions, laterality, extent; the
agreement with the input's reference mask when it came with one; which mask it describes (``mask``: "model" or
"corrected"); the clinical values the grade used; and, in the JSON only, where the two diameters lie
(``diameter_lines``), which patient direction each edge of a displayed slice faces (``display_edges``, what the
page's and the PDF's orientation letters say; the diameters' (row, column) ends are read in that display) and the
input's identifiers as uploaded (``identifiers``).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lggdemo import NOT_FOR_DIAGNOSIS, __version__
from lggdemo.data.imageio import SLICE_SIZE
from lggdemo.data.kaggle import Clinical
from lggdemo.inference.corrected import MASK_NOTES
from lggdemo.inference.grade import GRADE_CAVEAT, PatientGrade
from lggdemo.inference.predictor import PredictionResult, head_mask
from lggdemo.inference.wholepatient import VolumePrediction
from lggdemo.measure import Agreement, Measurements, agreement, measure
from lggdemo.models.card import card_metric
from lggdemo.patient.orientation import edge_letters
from lggdemo.patient.volume import Volume

#: Patient-level grade fields, the same in every report.
GRADE_COLUMNS = ("p_g3", "raw_score", "grade_note")
#: The age and sex the grade used, whether each was given (false: not given, the grade treated it as unknown; null:
#: no grade was computed), and where they came from (``clinical_source``: typed, a dataset record, the command line).
CLINICAL_COLUMNS = ("age", "age_given", "sex", "sex_given", "clinical_source")
SLICE_COLUMNS = ("file", "mask", "corrected", "tumour_area_px", "tumour_pct_of_brain", "dice", "slice_p_g3",
                 "slice_raw_score", *GRADE_COLUMNS, *CLINICAL_COLUMNS, "model_version", "device")
#: A whole patient's measurements (``mask``: which mask they describe); slice numbers from 1, as ``tumour_slices``.
MEASUREMENT_COLUMNS = ("mask", "tumour_ml_low", "tumour_ml_high", "tumour_voxels_low", "tumour_voxels_high",
                       "key_slice", "longest_mm", "perpendicular_mm", "product_mm2", "longest_px", "perpendicular_px",
                       "product_px2", "measurable", "max_diameter_3d_mm", "mean_diameter_mm", "lesions",
                       "laterality", "extent_rl_mm", "extent_ap_mm", "extent_si_mm")
#: Against the input's reference mask (null without one); distances in ``distance_units`` ("mm", or "voxels" for an
#: input without a spacing: then only a rough ranking).
AGREEMENT_COLUMNS = ("hd95_mm", "assd_mm", "surface_dice_1mm", "surface_dice_2mm", "volume_diff_pct",
                     "product_diff_pct", "measurable_agrees", "distance_units")
PATIENT_COLUMNS = ("input", "kind", "slices", "spacing_mm", "tumour_voxels", "tumour_ml", "tumour_slices",
                   "dice", "truth_voxels", *MEASUREMENT_COLUMNS, "edited_slices", *AGREEMENT_COLUMNS,
                   *CLINICAL_COLUMNS, *GRADE_COLUMNS, "model_version", "device", "error")
#: Decimals each measured number is rounded to, here and wherever it is printed (the PDF reads this).
DIGITS: dict[str, int] = {
    "tumour_ml": 3, "tumour_ml_low": 3, "tumour_ml_high": 3, "longest_mm": 1, "perpendicular_mm": 1,
    "product_mm2": 0, "longest_px": 1, "perpendicular_px": 1, "product_px2": 0, "max_diameter_3d_mm": 1,
    "mean_diameter_mm": 1, "extent_rl_mm": 1, "extent_ap_mm": 1, "extent_si_mm": 1, "dice": 4, "hd95_mm": 2,
    "assd_mm": 2, "surface_dice_1mm": 3, "surface_dice_2mm": 3, "volume_diff_pct": 1, "product_diff_pct": 1,
}


def rounded(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(float(x), digits)


def grade_fields(grade: PatientGrade | None) -> dict[str, Any]:
    """``p_g3``, ``raw_score`` and ``grade_note`` of one patient (all null when there is no prediction)."""
    if grade is None:
        return dict.fromkeys(GRADE_COLUMNS)
    return {"p_g3": rounded(grade.shown_p_g3), "raw_score": rounded(grade.raw_score), "grade_note": grade.text}


def clinical_fields(clinical: Clinical | None, source: str | None = None) -> dict[str, Any]:
    """:data:`CLINICAL_COLUMNS` of one prediction: ``clinical`` is what the grade used (None: no grade computed)."""
    if clinical is None:
        return dict.fromkeys(CLINICAL_COLUMNS)
    given = clinical.age is not None or clinical.sex is not None
    return {"age": clinical.age, "age_given": clinical.age is not None, "sex": clinical.sex,
            "sex_given": clinical.sex is not None, "clinical_source": source if given else None}


def slice_rows(result: PredictionResult, *, mask_kind: str = "model", edited: Sequence[int] = (),
               clinical_source: str | None = None) -> list[dict[str, Any]]:
    """One row per slice; a slice's own P(G3) is withheld whenever the patient's is, or is calibrated.

    ``mask_kind``: whose masks ``result`` holds ("model", or "corrected": ``inference.corrected``); ``edited``: the
    0-based indices of the slices corrected by hand (their ``corrected`` column is true).
    """
    shown = result.grade.shows_slice_p_g3
    patient = grade_fields(result.grade)
    clinical = clinical_fields(result.clinical, clinical_source)
    return [
        {
            "file": s.name,
            "mask": mask_kind,
            "corrected": i in set(edited),
            "tumour_area_px": s.area_px,
            "tumour_pct_of_brain": rounded(s.area_pct_brain, 3),
            "dice": rounded(s.dice),
            "slice_p_g3": rounded(s.grade_prob) if shown else None,
            "slice_raw_score": rounded(s.grade_prob),
            **patient,
            **clinical,
            "model_version": result.model_version,
            "device": result.device,
        }
        for i, s in enumerate(result.slices)
    ]


def slice_report_json(result: PredictionResult, *, mask_kind: str = "model", edited: Sequence[int] = (),
                      clinical_source: str | None = None) -> bytes:
    """The slice report; ``mask``, ``edited`` and ``clinical_source`` as for :func:`slice_rows`."""
    doc = {
        "lggdemo_version": __version__,
        "model_version": result.model_version,
        "device": result.device,
        "mask": mask_kind,
        "mask_note": MASK_NOTES.get(mask_kind, ""),
        "clinical": clinical_fields(result.clinical, clinical_source),
        **grade_fields(result.grade),
        "area_units": f"pixels at {SLICE_SIZE}x{SLICE_SIZE}",
        "grade_caveat": GRADE_CAVEAT,
        "slices": slice_rows(result, mask_kind=mask_kind, edited=edited, clinical_source=clinical_source),
        "disclaimer": NOT_FOR_DIAGNOSIS,
    }
    return _json(doc)


def slice_report_csv(result: PredictionResult, *, mask_kind: str = "model", edited: Sequence[int] = (),
                     clinical_source: str | None = None) -> bytes:
    return csv_bytes(slice_rows(result, mask_kind=mask_kind, edited=edited, clinical_source=clinical_source),
                     SLICE_COLUMNS)


@dataclass(frozen=True)
class StudyMeasures:
    """One mask's measurements and, when the input came with a reference mask, its agreement with it."""

    measurements: Measurements
    agreement: Agreement | None
    mask: str = "model"  # which mask they describe: "model" | "corrected"


def measure_study(volume: Volume, prediction: VolumePrediction, *, mask: np.ndarray | None = None,
                  mask_kind: str = "model") -> StudyMeasures:
    """Measure ``mask`` (default: the prediction's) on the volume's grid, with the model's probability for the
    volume range and the head (``head_mask``, the app's one background rule) for the midline."""
    shown = np.asarray(prediction.mask if mask is None else mask).astype(bool)
    head = np.stack([head_mask(s) for s in volume.slices]).astype(bool)
    probability = np.asarray(prediction.probability, np.float32)
    if volume.truth is None:
        return StudyMeasures(measure(shown, volume.spacing, probability, head), None, mask_kind)
    a = agreement(shown, volume.truth.astype(bool), volume.spacing, probability, head)
    return StudyMeasures(a.prediction, a, mask_kind)  # the agreement measured the mask the same way


def _diameter_number(d: Any, unit: str) -> float | None:
    return None if d is None else getattr(d, f"length_{unit}")


def measurement_fields(measures: StudyMeasures | None) -> dict[str, Any]:
    """The flat measurement and agreement columns of one patient (all null without measurements)."""
    out: dict[str, Any] = dict.fromkeys((*MEASUREMENT_COLUMNS, *AGREEMENT_COLUMNS))
    if measures is None:
        return out
    m, a = measures.measurements, measures.agreement
    low_high = m.volume_range_ml or (None, None)
    vox = m.volume_range_voxels or (None, None)
    extent = m.extent_mm or (None, None, None)
    out.update({
        "mask": measures.mask, "tumour_ml_low": low_high[0], "tumour_ml_high": low_high[1],
        "tumour_voxels_low": vox[0], "tumour_voxels_high": vox[1],
        "key_slice": None if m.key_slice is None else m.key_slice + 1,
        "longest_mm": _diameter_number(m.longest, "mm"), "perpendicular_mm": _diameter_number(m.perpendicular, "mm"),
        "product_mm2": m.bidimensional_product_mm2, "longest_px": _diameter_number(m.longest, "px"),
        "perpendicular_px": _diameter_number(m.perpendicular, "px"), "product_px2": m.bidimensional_product_px2,
        "measurable": m.measurable, "max_diameter_3d_mm": m.max_diameter_3d_mm,
        "mean_diameter_mm": m.mean_diameter_mm, "lesions": m.lesions, "laterality": m.laterality,
        "extent_rl_mm": extent[0], "extent_ap_mm": extent[1], "extent_si_mm": extent[2],
    })
    if a is not None:
        out.update({k: getattr(a, k) for k in AGREEMENT_COLUMNS})
    return {k: rounded(v, DIGITS[k]) if k in DIGITS and v is not None else v for k, v in out.items()}


def diameter_lines(measures: StudyMeasures | None) -> dict[str, Any] | None:
    """Where the two diameters lie, to draw them: slice number (from 1) and (row, column) ends on the 256x256
    display slice (pixel centres at integers); None when no tumour was found."""
    m = None if measures is None else measures.measurements
    if m is None or m.longest is None or m.perpendicular is None:
        return None
    return {"slice": m.longest.slice + 1,
            **{name: {"p0": [round(v, 2) for v in d.p0], "p1": [round(v, 2) for v in d.p1]}
               for name, d in (("longest", m.longest), ("perpendicular", m.perpendicular))}}


#: DICOM attributes a report names the input by, when the input carried them (never made up, never filled in).
DICOM_IDENTIFIERS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "AccessionNumber",
                     "StudyDescription", "SeriesDescription", "StudyInstanceUID")


def identifiers(volume: Volume) -> dict[str, Any]:
    """The input's identifiers as uploaded: its name and files and, for DICOM, the first FLAIR instance's
    identifying attributes that are present and not empty."""
    out: dict[str, Any] = {"name": volume.name, "kind": volume.provenance.kind, "files": list(volume.provenance.files)}
    sources = volume.extra.get("dicom_sources") or ()
    first = next(iter(sources), None)  # type: ignore[call-overload]
    if first is not None:
        for keyword in DICOM_IDENTIFIERS:
            value = str(first.get(keyword, "") or "").strip()
            if value:
                out[keyword] = value
    return out


def patient_row(volume: Volume | None, prediction: VolumePrediction | None, *, name: str = "",
                error: str | None = None, measures: StudyMeasures | None = None,
                mask_kind: str = "model", edited_slices: Sequence[int] = (),
                clinical_source: str | None = None) -> dict[str, Any]:
    """One patient as a flat row (CSV and the JSON ``patients`` list); an input that failed keeps its error.

    ``measures`` defaults to :func:`measure_study` of ``prediction.mask`` (``mask_kind`` says whose: "corrected"
    for ``inference.corrected``'s prediction); pass them when already computed (the page caches them).
    ``edited_slices``: the 1-based slices corrected by hand; ``clinical_source``: where age and sex came from.
    """
    p, v = prediction, volume
    if measures is None and p is not None and v is not None:
        measures = measure_study(v, p, mask_kind=mask_kind)
    clinical = p.clinical if p else None
    row = {
        "input": v.name if v is not None else name,
        "kind": v.provenance.kind if v is not None else None,
        "slices": v.n_slices if v is not None else None,
        "spacing_mm": None if v is None or v.spacing is None else [round(s, 4) for s in v.spacing],
        "tumour_voxels": p.tumour_voxels if p else None,
        "tumour_ml": rounded(p.tumour_ml, 3) if p else None,
        "tumour_slices": list(p.tumour_slices) if p else None,
        "dice": rounded(p.dice) if p else None,
        "truth_voxels": p.truth_voxels if p else None,
        **measurement_fields(measures),
        "edited_slices": list(edited_slices),
        **clinical_fields(clinical, clinical_source),
        **grade_fields(p.grade if p else None),
        "model_version": p.model_version if p else None,
        "device": p.device if p else None,
        "error": error,
    }
    if v is not None:
        row["identifiers"] = identifiers(v)
        row["diameter_lines"] = diameter_lines(measures)
        row["display_edges"] = dataclasses.asdict(edge_letters(v.grid))
        row["measurement_notes"] = [] if measures is None else list(measures.measurements.notes)
    return row


def model_summary(card: Mapping[str, Any] | None) -> dict[str, Any]:
    """The card's version and the recipe's cross-validated per-volume Dice, as a report quotes them."""
    cv = card_metric(dict(card or {}), "segmentation", "per_volume_dice_mean", cross_validated=True)
    return {"version": (card or {}).get("version"),
            "cross_validated_dice": None if cv is None else {"value": rounded(cv.value, 3), "ci95": None if cv.ci95 is None
                                                             else [rounded(c, 3) for c in cv.ci95], "n": cv.n}}


def patient_report_document(rows: Sequence[dict[str, Any]], notes: dict[str, Sequence[str]] | None = None,
                            card: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON report's document; ``card`` (the weights' model card) adds ``model``: its version and the recipe's
    cross-validated Dice, which the PDF quotes."""
    return {
        "lggdemo_version": __version__,
        **({} if card is None else {"model": model_summary(card)}),
        "volume_units": "tumour_voxels: voxels of the 256x256 slices; tumour_ml: millilitres from the input's voxel "
                        "spacing (null when the input records none, e.g. the Kaggle layout)",
        "measurement_units": "mm and mm2 from the input's voxel spacing (null without one: then *_px, pixels of the "
                             "256x256 slices); key_slice and diameter_lines.slice count from 1 like tumour_slices; "
                             "tumour_ml_low/high: the volume's range on the model's probability (lggdemo.measure)",
        "digits": dict(DIGITS),
        "mask_notes": dict(MASK_NOTES),
        "clinical_units": "age in years; age_given / sex_given false: not given, the grade treated it as unknown; "
                          "null: no grade was computed",
        "grade_caveat": GRADE_CAVEAT,
        "patients": list(rows),
        "notes": {k: list(v) for k, v in (notes or {}).items()},
        "disclaimer": NOT_FOR_DIAGNOSIS,
    }


def patient_report_json(rows: Sequence[dict[str, Any]], notes: dict[str, Sequence[str]] | None = None,
                        card: Mapping[str, Any] | None = None) -> bytes:
    return _json(patient_report_document(rows, notes, card))


def patient_report_csv(rows: Sequence[dict[str, Any]]) -> bytes:
    return csv_bytes(rows, PATIENT_COLUMNS)


def _json(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2) + "\n").encode()


def csv_bytes(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> bytes:
    """Empty cells for null; a list (tumour slices, spacing) as space-separated values."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else (" ".join(map(str, row[k])) if isinstance(row[k], list)
                                                           else row[k]) for k in columns})
    return buf.getvalue().encode()
