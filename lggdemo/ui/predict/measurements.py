"""Measurements on Predict: the table a clinician reads, the two diameters on the key slice, the probability map to
take away (the PDF report is among the Downloads, ``ui/predict/downloads.py``, once per mask).

Only widgets live here. The numbers are the report row's (``inference.reports.patient_row``: the same row the JSON,
CSV and PDF carry), the table is the PDF's own (``report.pdf.measurement_lines``), and the key-slice picture is the
PDF's (``report.pdf.slice_picture``), so what the page shows and what a reader takes away cannot disagree. The
measurements are computed once per prediction (the surface metrics against a reference take a second or two, and
MONAI's first import longer) and kept in ``st.session_state``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from lggdemo.inference.reports import DIGITS, StudyMeasures, measure_study, patient_row
from lggdemo.inference.wholepatient import VolumePrediction
from lggdemo.measure import MEASURABLE_MM, measure
from lggdemo.measure.volume import volume_range_voxels
from lggdemo.patient.exporters import mask_bytes, safe_name
from lggdemo.patient.volume import Volume
from lggdemo.report.pdf import NO_TUMOUR, agreement_lines, measurement_lines, slice_picture
from lggdemo.viz.measurements import LONGEST_COLOUR, PERPENDICULAR_COLOUR, Line, draw_diameters
from lggdemo.viz.overlay import overlay_mask

STATE_KEY = "patient_measures"

#: The teaching layer's two sentences (one idea each, the number's use before its definition's detail).
PRODUCT_LESSON = (
    "**Bidimensional product.** On the slice where the tumour is largest, its longest diameter times the longest "
    "diameter at right angles to it: two calliper lines anyone can redraw on any scanner, which is why the RANO-LGG "
    f"response criteria track it — a lesion counts as measurable when both lines reach {MEASURABLE_MM:.0f} mm, and a "
    "rise of 25% or more between visits reads as progression.")
MEAN_DIAMETER_LESSON = (
    "**Mean tumour diameter.** The volume turned back into a length, (2·V)^(1/3): lower-grade gliomas grow slowly "
    "and steadily, a few millimetres of this diameter a year, so plotting it over visits gives a growth rate that "
    "is steadier than any single diameter, whose line can land differently each time.")
RANGE_LESSON = (
    "**Why a range.** The low end keeps only the voxels of the mask the model is at least 70% sure of; the high "
    "end adds the neighbouring voxels it gives at least 30%. It is not a confidence interval: it shows how much the "
    "volume depends on where the tumour's edge is drawn.")


def cached_measures(volume: Volume, result: VolumePrediction, key: object) -> StudyMeasures:
    """:func:`measure_study` once per prediction (``key``: the page's result key) and mask content."""
    signature = (key, hash(np.ascontiguousarray(result.mask).tobytes()))
    held = st.session_state.get(STATE_KEY)
    if held is None or held[0] != signature:
        with st.spinner("Measuring the tumour…"):
            held = (signature, measure_study(volume, result))
        st.session_state[STATE_KEY] = held
    return held[1]


def volume_range_delta(result: VolumePrediction) -> str:
    """The summary metric's second line: the volume's range (``measure``'s own rule, without the slower rest)."""
    low, high = volume_range_voxels(np.asarray(result.mask) > 0, np.asarray(result.probability, np.float32))
    if result.tumour_ml is None or not result.tumour_voxels:
        return f"range {low}–{high} voxels"
    per_voxel = result.tumour_ml / result.tumour_voxels
    return f"range {low * per_voxel:.1f}–{high * per_voxel:.1f} mL"


def volume_text(row: dict[str, Any]) -> tuple[str, str]:
    """(value, range) of the volume as the table states them: mL with a spacing, else voxels."""
    if row.get("tumour_ml") is not None:
        low, high = row.get("tumour_ml_low"), row.get("tumour_ml_high")
        rng = f"range {low:.1f}–{high:.1f} mL" if low is not None and high is not None else "no range"
        return f"{row['tumour_ml']:.1f} mL", rng
    low, high = row.get("tumour_voxels_low"), row.get("tumour_voxels_high")
    return f"{row['tumour_voxels']} voxels", (f"range {low}–{high} voxels" if low is not None else "no range")


def render_measurements(volume: Volume, result: VolumePrediction, key: object) -> None:
    """The whole-patient measurements: table, key slice with its diameters, the lessons, PDF and probability map."""
    st.subheader("Measurements")
    measures = cached_measures(volume, result, key)
    row = patient_row(volume, result, measures=measures)
    digits = DIGITS  # the report's own rounding, as the PDF prints it
    value, rng = volume_text(row)
    left, right = st.columns([3, 2], gap="large")
    with left:
        st.metric("Tumour volume (with its range)", value, rng, delta_color="off", delta_arrow="off")
        lines = measurement_lines(row, digits) + agreement_lines(row, digits)
        st.table(pd.DataFrame(lines, columns=["Measurement", "Value", "Range / how"]).set_index("Measurement"))
        notes = [n for n in row.get("measurement_notes") or [] if n != "no tumour found"]
        if notes:
            st.caption("Note: " + "; ".join(notes) + ".")
    with right:
        if row.get("key_slice") is None:
            st.info(NO_TUMOUR)
        else:
            k = int(row["key_slice"]) - 1
            st.image(slice_picture(volume.slices, result.mask, k, row), width="stretch",
                     caption=f"Key slice {k + 1} of {volume.n_slices}: yellow, the longest diameter; cyan, the "
                             "perpendicular one" + ("; bar in mm along the columns." if volume.spacing else
                                                    " (no voxel size recorded: lengths in pixels, no scale bar)."))
    st.markdown(PRODUCT_LESSON)
    st.markdown(MEAN_DIAMETER_LESSON)
    st.markdown(RANGE_LESSON)
    _render_takeaway(volume, result)


def _render_takeaway(volume: Volume, result: VolumePrediction) -> None:
    """The probability map, made when clicked (Streamlit runs the callable on download); the PDF report of these
    measurements is under Downloads, once per mask (the model's, and a corrected one)."""
    stem = safe_name(volume.name)
    st.download_button("Download probability map (NIfTI)", lambda: mask_bytes("prob-nifti", volume, result)[1],
                       file_name=f"{stem}_prob.nii.gz", mime="application/gzip", key="patient_dl_prob",
                       on_click="ignore",
                       help="The model's tumour probability per voxel, float32 0–1 on the input's own (FLAIR's) grid, "
                            "before the threshold and the 3D rule.")
    st.caption("The one-page PDF report of these measurements, with three key slices and the grade, is under "
               "**Downloads** below.")


def render_slice_diameters(mask: np.ndarray, base: np.ndarray) -> None:
    """One uploaded slice (no voxel size): its two diameters in pixels, drawn over ``base`` with the mask."""
    m = measure(np.asarray(mask)[None] > 0, None)
    if m.longest is None or m.perpendicular is None:
        st.caption("No tumour on this slice, so no diameters.")
        return
    lines = [Line(m.longest.p0, m.longest.p1, f"{m.longest.length_px:.0f} px", LONGEST_COLOUR),
             Line(m.perpendicular.p0, m.perpendicular.p1, f"{m.perpendicular.length_px:.0f} px", PERPENDICULAR_COLOUR)]
    st.image(draw_diameters(overlay_mask(base, mask, alpha=0.35), lines, None, scale=2), width="stretch",
             caption=f"Diameters on this slice: {m.longest.length_px:.1f} × {m.perpendicular.length_px:.1f} px "
                     f"(product {m.bidimensional_product_px2:.0f} px²). An image upload records no voxel size, so "
                     "these are pixels; RANO-LGG needs millimetres (upload NIfTI or DICOM for them).")
