"""Downloads that say what they hold: the model's mask, and after a hand correction the corrected mask, apart.

Once a mask was corrected, a report that still carried the model's volume (107.54 mL beside a shown 108.19 mL)
misled whoever read it. Here every download exists once per mask: the model's, and -- when this tab holds
corrections -- the corrected one, built by :mod:`lggdemo.inference.corrected` so the exporters and
:mod:`lggdemo.inference.reports` see an ordinary prediction whose numbers are the corrected mask's. Each report
states which mask it describes (``mask``: "model" or "corrected"), with its own volume, and records the clinical
values the grade used (``clinical.source``). File names say it too (``<stem>_corrected_mask.nii.gz``).

Only widgets and caching live here; the whole-patient set is kept in ``st.session_state["patient_downloads"]``
per (prediction, mask content), so a rerun that changes nothing encodes nothing.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import streamlit as st

from lggdemo.data.imageio import UploadBatch
from lggdemo.inference.corrected import MASK_NOTES, correct_slices, correct_volume
from lggdemo.inference.predictor import PredictionResult
from lggdemo.inference.reports import (
    StudyMeasures,
    measure_study,
    patient_report_csv,
    patient_report_document,
    patient_report_json,
    patient_row,
    slice_report_csv,
    slice_report_json,
)
from lggdemo.inference.wholepatient import VolumePrediction
from lggdemo.patient.exporters import ExportError, mask_bytes, safe_name
from lggdemo.patient.volume import Volume, VolumeError
from lggdemo.ui.predict import clinical as clinical_fields
from lggdemo.ui.predict.correct import corrected_volume, slice_corrections

STATE_KEY = "patient_downloads"
T = TypeVar("T")
TITLES = {"model": "The model's mask", "corrected": "The corrected mask"}


@dataclass(frozen=True)
class Download:
    """One button: what it says, the file's name, its bytes (or a callable made on click) and type."""

    label: str
    file_name: str
    data: bytes | Callable[[], bytes]
    mime: str


def kind_file_name(name: str, stem: str, kind: str) -> str:
    """``<stem>_mask.nii.gz`` -> ``<stem>_corrected_mask.nii.gz`` for the corrected mask; the model's keep theirs."""
    if kind == "model":
        return name
    return f"{stem}_{kind}{name[len(stem):]}" if name.startswith(stem) else f"{kind}_{name}"


def _label(text: str, kind: str) -> str:
    """``Download mask (NIfTI)`` for the model's; ``Download corrected mask (NIfTI)`` for the corrected one."""
    return text if kind == "model" else text.replace("Download ", f"Download {kind} ", 1)


def patient_files(volume: Volume, prediction: VolumePrediction, kind: str, edited: tuple[int, ...] = (),
                  card: dict | None = None, clinical_source: str | None = None,
                  measures: StudyMeasures | None = None) -> tuple[list[Download], list[str]]:
    """Every download of one mask of a whole patient, and a message for each that could not be made.

    ``measures``: that mask's, when the page already measured it (else measured here).
    """
    stem = safe_name(volume.name)
    files: list[Download] = []
    failed: list[str] = []
    formats = [("nifti", "Download mask (NIfTI)", "application/gzip"),
               ("png", "Download masks (PNG zip)", "application/zip")]
    if volume.provenance.kind == "dicom":
        formats.insert(1, ("dicom-seg", "Download mask (DICOM SEG)", "application/dicom"))
    for fmt, text, mime in formats:
        label = _label(text, kind)
        try:
            name, data = mask_bytes(fmt, volume, prediction)
        except (ExportError, VolumeError, ValueError) as exc:
            failed.append(f"{label}: could not be made ({exc})")
            continue
        files.append(Download(label, kind_file_name(name, stem, kind), data, mime))
    notes = {volume.name: list(volume.provenance.notes)}

    @_once
    def row() -> dict:  # measured on first use: a corrected mask's surface metrics take a second or two
        m = measures or measure_study(volume, prediction, mask_kind=kind)
        return patient_row(volume, prediction, measures=m, edited_slices=edited, clinical_source=clinical_source)

    def json_bytes() -> bytes:
        return patient_report_json([row()], notes, card)

    def csv_bytes() -> bytes:
        return patient_report_csv([row()])

    def pdf_bytes() -> bytes:
        from lggdemo.report import study_pdf  # fpdf2 and its fonts load on the first PDF, not on every page

        return study_pdf(patient_report_document([row()], notes, card), volume.slices, prediction.mask)

    # The model's reports are made now (its measurements are the page's, already computed); a corrected mask's on
    # click, so a brush stroke does not wait for a measurement nobody downloads.
    reports = [("Download report (JSON)", "report.json", json_bytes, "application/json"),
               ("Download report (CSV)", "report.csv", csv_bytes, "text/csv"),
               ("Download report (PDF)", "report.pdf", pdf_bytes, "application/pdf")]
    prefix = "" if kind == "model" else f"{kind}_"
    for text, suffix, make, mime in reports:
        eager = kind == "model" and measures is not None and not suffix.endswith(".pdf")
        files.append(Download(_label(text, kind), f"{stem}_{prefix}{suffix}", make() if eager else _once(make), mime))
    return files, failed


def _once(make: Callable[[], T]) -> Callable[[], T]:
    """``make`` run on the first call only (a download's bytes, made when its button is clicked)."""
    held: list[T] = []

    def get() -> T:
        if not held:
            held.append(make())
        return held[0]

    return get


def _digest(mask: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(mask, dtype=np.uint8).tobytes()).hexdigest()


def render_patient_downloads(volume: Volume, result: VolumePrediction, key: object, token: object,
                             card: dict | None = None, measures: StudyMeasures | None = None) -> None:
    """The whole-patient Downloads: the model's mask, and the corrected one beside it once this tab corrected it.

    ``key`` names the prediction (the page's result key), ``token`` this tab's correction histories (as passed to
    the editor); ``card`` the weights' model card, quoted by the reports; ``measures`` the model's mask's, when the
    page already measured it.
    """
    corrected, n_edited = corrected_volume(result.mask, token)
    sets: list[tuple[str, VolumePrediction, tuple[int, ...]]] = [("model", result, ())]
    if n_edited:
        fixed = correct_volume(result, corrected, volume.voxel_ml, volume.truth)
        if fixed.edited_slices:  # strokes that changed nothing leave one set
            sets.append(("corrected", fixed.prediction, fixed.edited_slices))
    source = clinical_fields.source()
    held: dict = st.session_state.setdefault(STATE_KEY, {})
    st.subheader("Downloads")
    columns = st.columns(len(sets), gap="large") if len(sets) > 1 else [st.container()]
    for col, (kind, prediction, edited) in zip(columns, sets, strict=True):
        cache_key = (key, kind, _digest(prediction.mask), source)
        if cache_key not in held:
            with st.spinner(f"Preparing the downloads of {TITLES[kind].lower()}…"):
                held[cache_key] = patient_files(volume, prediction, kind, edited, card, source,
                                                measures if kind == "model" else None)
            while len(held) > 4:
                held.pop(next(iter(held)))
        files, failed = held[cache_key]
        with col, st.container(key=f"patient_downloads_{kind}"):
            _describe(kind, prediction, edited, len(sets) > 1)
            for message in failed:
                st.error(message)
            for c, f in zip(itertools.cycle(st.columns(3 if len(sets) == 1 else 2)), files):
                c.download_button(f.label, f.data, file_name=f.file_name, mime=f.mime, key=f"patient_dl_{kind}_{f.label}",
                                  on_click="ignore")


def _describe(kind: str, prediction: VolumePrediction, edited: tuple[int, ...], both: bool) -> None:
    volume = (f"{prediction.tumour_ml:.2f} mL ({prediction.tumour_voxels} voxels)" if prediction.tumour_ml is not None
              else f"{prediction.tumour_voxels} voxels")
    if both:
        st.markdown(f"**{TITLES[kind]}** · tumour volume {volume}")
    else:
        st.caption(f"The model's mask (no hand corrections) · tumour volume {volume}.")
    if kind == "corrected":
        slices = ", ".join(map(str, edited[:12])) + (" …" if len(edited) > 12 else "")
        st.caption(f"{MASK_NOTES[kind]} Corrected slices: {slices}.")
    elif both:
        st.caption(MASK_NOTES[kind])


def render_slice_downloads(result: PredictionResult, batch: UploadBatch, version: str) -> None:
    """Slice mode's reports: the model's, and the corrected one once this tab corrected any slice of the input."""
    edits = slice_corrections(result, batch, version)
    sets: list[tuple[str, PredictionResult, tuple[int, ...]]] = [("model", result, ())]
    if edits:
        fixed = correct_slices(result, edits, [s.image for s in batch.slices], [s.truth for s in batch.slices])
        if fixed.edited:
            sets.append(("corrected", fixed.result, fixed.edited))
    source = clinical_fields.source()
    st.subheader("Reports")
    for kind, res, edited in sets:
        with st.container(key=f"predict_reports_{kind}"):
            if len(sets) > 1:
                area = sum(s.area_px for s in res.slices)
                st.markdown(f"**{TITLES[kind]}** · tumour area over the slices {area} px"
                            + (f" · corrected: {', '.join(res.slices[i].name for i in edited)}" if edited else ""))
            stem = "lgg_prediction" if kind == "model" else f"lgg_prediction_{kind}"
            suffix = "" if kind == "model" else f"_{kind}"  # the model's keep their keys (and browser tests)
            c1, c2 = st.columns(2)
            c1.download_button(_label("Download report (CSV)", kind),
                               slice_report_csv(res, mask_kind=kind, edited=edited, clinical_source=source),
                               file_name=f"{stem}.csv", mime="text/csv", key=f"predict_dl_csv{suffix}",
                               on_click="ignore")
            c2.download_button(_label("Download report (JSON)", kind),
                               slice_report_json(res, mask_kind=kind, edited=edited, clinical_source=source),
                               file_name=f"{stem}.json", mime="application/json", key=f"predict_dl_json{suffix}",
                               on_click="ignore")
