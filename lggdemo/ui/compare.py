"""The "Compare two scans" page: a baseline and a follow-up of one patient -> registration, both masks, the change.

Only widgets live here. Reading is the whole-patient mode's (``readers.open_files`` through
``ui.predict.patient.open_uploads``), the work is ``longitudinal.pipeline.compare`` and every download is
``longitudinal.outputs.comparison_files`` -- the same calls as ``lggdemo-compare``. The result is kept in
``st.session_state["compare_result"]`` with a key of everything it depends on (both uploads, dates, spacing,
model version), so moving the slice slider never recomputes it.

Without a second visit (the dataset has one per patient) the page can make a synthetic follow-up of the baseline
with a known movement and growth (``longitudinal.synthetic``), labelled as such wherever it is shown.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import replace

import numpy as np
import streamlit as st
from PIL import Image

from lggdemo import NOT_FOR_DIAGNOSIS
from lggdemo.longitudinal.change import ChangeError, ErrorModel
from lggdemo.longitudinal.outputs import comparison_files
from lggdemo.longitudinal.pictures import change_overlay, checkerboard, key_slice, visit_picture
from lggdemo.longitudinal.pipeline import GONE, NEW, Comparison, compare
from lggdemo.longitudinal.rano import IMAGING_ONLY
from lggdemo.longitudinal.register import RegistrationError
from lggdemo.longitudinal.synthetic import SyntheticError, make_follow_up
from lggdemo.patient.volume import Volume, VolumeError
from lggdemo.ui.predict.patient import UPLOAD_TYPES, open_uploads
from lggdemo.ui.predict.shared import load_models
from lggdemo.viz.orientation import with_letters  # both scans in the display layout: the kaggle_3m letters

VISITS = (("baseline", "Baseline"), ("followup", "Follow-up"))
SYNTHETIC_GROWTH = 1.25
SYNTHETIC_MOVE = ((4.0, -3.0, 6.0), (3.0, -5.0, 2.0))  # degrees, mm: a typical repositioning between visits


def _read(kind: str) -> tuple[Volume | None, str | None]:
    """The uploaded study of one visit (cached per upload), or the message saying why not."""
    files = st.session_state.get(f"compare_files_{kind}") or []
    if not files:
        return None, None
    signature = tuple(f.file_id for f in files)
    held = st.session_state.get(f"compare_volume_{kind}")
    if held is None or held[0] != signature:
        try:
            with st.spinner(f"Reading the {kind}…"):
                volume = open_uploads([(f.name, f.getvalue()) for f in files]).volume()
            held = (signature, volume, None)
        except VolumeError as exc:
            held = (signature, None, str(exc))
        st.session_state[f"compare_volume_{kind}"] = held
    return held[1], held[2]


def _with_spacing(volume: Volume, spacing: tuple[float, float, float] | None) -> Volume:
    return replace(volume, spacing=spacing) if volume.spacing is None and spacing is not None else volume


def render_inputs() -> tuple[Volume | None, Volume | None, tuple[dt.date | None, dt.date | None], bool]:
    """Two upload columns with their dates, the optional voxel size, and the synthetic follow-up switch."""
    volumes: list[Volume | None] = []
    dates: list[dt.date | None] = []
    columns = st.columns(2, gap="large")
    for col, (kind, title) in zip(columns, VISITS):
        with col:
            st.markdown(f"**{title}**")
            st.file_uploader(f"{title} study: a Kaggle-layout .zip, NIfTI file(s) or a DICOM .zip",
                             type=UPLOAD_TYPES, accept_multiple_files=True, key=f"compare_files_{kind}")
            volume, error = _read(kind)
            if error:
                st.error(error)
            dates.append(st.date_input(f"{title} date (used when the study records none)", value=None,
                                       key=f"compare_date_{kind}", min_value=dt.date(1980, 1, 1),
                                       max_value=dt.date(2100, 12, 31)))
            volumes.append(volume)
    synthetic = st.toggle("No follow-up scan? Make a synthetic one from the baseline (known movement, volume × "
                          f"{SYNTHETIC_GROWTH:g})", key="compare_synthetic",
                          help="The dataset has one visit per patient. This grows the baseline's tumour by a known "
                               "factor and moves the head, so you can see what the comparison recovers.")
    with st.expander("Voxel size for studies that record none (the Kaggle layout)"):
        st.caption("Without it, volumes are in voxels, there is no mean diameter in mm and no growth rate; the % "
                   "changes and the categories do not need it.")
        c1, c2, c3 = st.columns(3)
        given = [c.number_input(label, min_value=0.0, max_value=20.0, value=None, step=0.1, key=f"compare_sp_{i}")
                 for i, (c, label) in enumerate(zip((c1, c2, c3), ("Slice (mm)", "Row (mm)", "Column (mm)")))]
    spacing = tuple(float(g) for g in given) if all(g for g in given) else None  # type: ignore[arg-type]
    out = [None if v is None else _with_spacing(v, spacing) for v in volumes]  # type: ignore[arg-type]
    return out[0], out[1], (dates[0], dates[1]), synthetic


def _result(predictor, baseline: Volume, followup: Volume, dates: tuple[dt.date | None, dt.date | None],
            key: tuple[object, ...]) -> Comparison:
    held = st.session_state.get("compare_result")
    if held is None or held[0] != key:
        bar = st.progress(0.0, text="Starting…")
        comparison = compare(predictor, baseline, followup, dates=dates, error_model=ErrorModel.load(),
                             progress=lambda f, msg: bar.progress(min(1.0, f), text=msg))
        bar.empty()
        held = (key, comparison)
        st.session_state["compare_result"] = held
        st.session_state["compare_token"] = st.session_state.get("compare_token", 0) + 1
        st.session_state.pop("compare_downloads", None)
    return held[1]


def _synthetic(baseline: Volume) -> Volume:
    """The synthetic follow-up of the current baseline, made once per baseline upload."""
    signature = (st.session_state.get("compare_volume_baseline", (None,))[0], baseline.spacing)
    held = st.session_state.get("compare_synthetic_volume")
    if held is None or held[0] != signature:
        with st.spinner("Making a synthetic follow-up…"):
            volume = make_follow_up(baseline, rotation_deg=SYNTHETIC_MOVE[0], translation_mm=SYNTHETIC_MOVE[1],
                                    growth=SYNTHETIC_GROWTH, noise_sd=3.0, bias=0.05).volume
        held = (signature, volume)
        st.session_state["compare_synthetic_volume"] = held
    return held[1]


def render_registration(c: Comparison) -> None:
    reg = c.registration
    st.subheader("Registration")
    (st.success if reg.verdict == "good" else st.warning)(reg.verdict_text[0].upper() + reg.verdict_text[1:])
    m = st.columns(4)
    m[0].metric("Normalised MI", f"{reg.after.nmi:.3f}", f"{reg.after.nmi - reg.before.nmi:+.3f} vs before",
                delta_color="off")
    m[1].metric("Mattes MI", f"{reg.after.mattes_mi:.3f}", f"{reg.after.mattes_mi - reg.before.mattes_mi:+.3f} vs before",
                delta_color="off")
    m[2].metric("Rotation", f"{reg.rotation_total_deg:.1f}°")
    m[3].metric("Translation", f"{float(np.linalg.norm(reg.translation_mm)):.1f} mm")
    st.caption("Rigid (6 degrees of freedom) on FLAIR, Mattes mutual information, three resolutions, started from the "
               "heads' centres of mass. Similarity before = the two scans as they lie; after = the follow-up moved "
               "onto the baseline. " + " ".join(reg.notes))


def _flicker_gif(a: np.ndarray, b: np.ndarray) -> bytes:
    frames = [Image.fromarray(np.asarray(x, np.uint8)).convert("P") for x in (a, b)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=700, loop=0)
    return buf.getvalue()


def render_views(c: Comparison) -> None:
    st.subheader("Baseline and follow-up, side by side")
    n = c.baseline.n_slices
    start = key_slice(c.change_map, c.baseline_mask, c.followup_mask) + 1
    token = st.session_state.get("compare_token", 0)
    idx = st.slider("Slice (inferior to superior), both scans", 1, n, start, key=f"compare_slice_{token}") - 1
    doc = c.table.to_dict()
    cols = st.columns(3)
    cols[0].image(with_letters(visit_picture(c.baseline.slices[idx], c.baseline_mask[idx], idx,
                                             doc["baseline"]["measurements"])),
                  caption=f"Baseline · slice {idx + 1} of {n}", width="stretch")
    cols[1].image(with_letters(visit_picture(c.followup_on_baseline[idx], c.followup_mask[idx], idx,
                                             doc["followup"]["measurements"])),
                  caption=f"Follow-up, registered onto the baseline · slice {idx + 1}", width="stretch")
    both = c.baseline_mask[idx] & c.followup_mask[idx]
    cols[2].image(with_letters(change_overlay(c.followup_on_baseline[idx, ..., 1], c.change_map[idx], both)),
                  caption=f"Change: orange new ({int((c.change_map[idx] == NEW).sum())} px), blue gone "
                          f"({int((c.change_map[idx] == GONE).sum())} px), red both", width="stretch")
    st.caption("Red: the mask; yellow and cyan: the longest diameter and the one perpendicular to it, drawn on each "
               "visit's key slice (the slice of largest cross-section). Anterior at the top, the patient's right on "
               "the image's left.")
    mode = st.radio("Registration check", ("Checkerboard", "Flicker"), horizontal=True, key="compare_check")
    fixed, moved = c.baseline.slices[idx, ..., 1], c.followup_on_baseline[idx, ..., 1]
    left, _ = st.columns([1, 2])
    if mode == "Checkerboard":
        left.image(checkerboard(fixed, moved), caption="Squares alternate baseline and follow-up: aligned edges run on "
                                                       "across the squares", width="stretch")
    else:
        left.image(_flicker_gif(fixed, moved), caption="Baseline and follow-up in turn: a good registration only "
                                                       "flickers where the tumour changed", width="stretch")


def render_table(c: Comparison) -> None:
    t = c.table
    st.subheader("Change")
    st.dataframe(t.rows(), hide_index=True, width="stretch")
    for verdict in (t.volume_verdict, t.product_verdict):
        (st.info if verdict.beyond is not True else st.warning)(verdict.text)
    st.caption(t.growth_note)
    st.caption(f"RANO-LGG: {t.rano_lgg.rule}. RANO 2.0: {t.rano2.rule}. **{IMAGING_ONLY[0].upper() + IMAGING_ONLY[1:]}.**")
    st.caption(t.fragility)
    for note in t.notes:
        st.caption(note)


def render_downloads(c: Comparison) -> None:
    key = st.session_state["compare_result"][0]
    held = st.session_state.get("compare_downloads")
    if held is None or held[0] != key:
        held = (key, comparison_files(c))
        st.session_state["compare_downloads"] = held
    st.subheader("Downloads")
    mimes = {".pdf": "application/pdf", ".json": "application/json", ".csv": "text/csv", ".gz": "application/gzip"}
    labels = {"comparison.pdf": "Download the pair report (PDF)", "comparison.json": "Download the comparison (JSON)",
              "change.csv": "Download the change table (CSV)",
              "followup_registered.nii.gz": "Follow-up FLAIR on the baseline grid (NIfTI)",
              "baseline_mask.nii.gz": "Baseline mask (NIfTI)", "followup_mask.nii.gz": "Follow-up mask, registered (NIfTI)"}
    cols = st.columns(3)
    for i, (name, label) in enumerate(labels.items()):
        data = held[1][name]
        cols[i % 3].download_button(label, data, file_name=name, mime=mimes["." + name.rsplit(".", 1)[-1]],
                                    key=f"compare_dl_{name}", on_click="ignore")


def render_page() -> None:
    st.title("Compare two scans")
    st.caption("Has the tumour changed between two visits? The follow-up is registered onto the baseline, both are "
               "segmented, and the change is measured the way clinicians follow lower-grade gliomas. " + NOT_FOR_DIAGNOSIS)
    baseline, followup, dates, synthetic = render_inputs()
    if baseline is not None and synthetic:
        try:
            followup = _synthetic(baseline)
            st.info(f"Follow-up: synthetic, made from the baseline (volume × {SYNTHETIC_GROWTH:g}, rotated "
                    f"{SYNTHETIC_MOVE[0]} deg, moved {SYNTHETIC_MOVE[1]} mm). Not a real second visit.")
        except SyntheticError as exc:
            st.error(f"No synthetic follow-up: {exc} (it needs the baseline's own masks, e.g. a Kaggle zip with them).")
            followup = None
    if baseline is None or followup is None:
        st.info("Upload a baseline and a follow-up study of the same patient (or switch on the synthetic follow-up).")
        return
    models = load_models()
    if models.predictor is None:
        st.error(models.message)
        return
    predictor = models.predictor
    key = tuple(st.session_state.get(f"compare_volume_{k}", (None,))[0] for k, _ in VISITS) + (
        dates, synthetic, baseline.spacing, followup.spacing, predictor.version)
    try:
        comparison = _result(predictor, baseline, followup, dates, key)
    except RegistrationError as exc:
        st.error(f"These two scans are not compared: {exc}")
        return
    except (ChangeError, VolumeError, ValueError, RuntimeError) as exc:
        st.error(f"The comparison failed: {exc}")
        return
    render_registration(comparison)
    render_views(comparison)
    render_table(comparison)
    render_downloads(comparison)
