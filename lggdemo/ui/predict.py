"""The Predict page's widgets: inputs (uploads, clinical fields, example), the cached models and the results.

Everything that can go wrong with a file or a field becomes a message on the page; only the library
(``imageio.read_uploads``, ``infer.Predictor``, ``explain``) does the work, so what the page shows is
what a script calling the library would get.

State lives in ``st.session_state`` under ``predict_*`` keys: the current input batch with a token that
changes whenever the input does, so the prediction and each Grad-CAM are computed once per input,
clinical fields and model version, not on every widget click.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

from lggdemo import NOT_FOR_DIAGNOSIS
from lggdemo.data import Clinical, DatasetError
from lggdemo.device import DeviceError, choose_device
from lggdemo.explain import CamResult, grade_cam, segmentation_cam
from lggdemo.gradeinfo import RAW_SCORE_LABEL
from lggdemo.imageio import UploadBatch, read_uploads
from lggdemo.infer import (
    InputError,
    PredictionResult,
    Predictor,
    card_metric,
    example_case,
    report_csv,
    report_json,
    safe_clinical,
    seen_label_for_name,
)
from lggdemo.overlay import CHANNELS, channel_rgb, overlay_heatmap, overlay_mask
from lggdemo.ui.correct import render_slice_correction
from lggdemo.ui.teach import render_slice_lesson
from lggdemo.weights import CARD_FILE, WeightsError, active_weights, is_complete, read_card

UPLOAD_TYPES = ["tif", "tiff", "png", "jpg", "jpeg"]
SEX_OPTIONS = ("unknown", "female", "male")
INPUT_MODES = ("Slices", "Whole patient")
HOW_TO_GET_WEIGHTS = (
    "Train them with `python -m lggdemo.train` (writes the bundled `weights/` folder), or start a training run "
    "from the sidebar's retraining panel and activate it when it finishes."
)
SLICE_RULE_CAPTION = "Single slices: 2D clean-up only; whole patients also keep the largest 3D tumour."
_tokens = itertools.count(1)


@dataclass(frozen=True)
class LoadedModels:
    predictor: Predictor | None
    message: str | None  # why there is no predictor, for the page


# --- models ---------------------------------------------------------------------------------------


@st.cache_resource(max_entries=2, show_spinner="Loading the models…")
def _load_predictor(version: str, directory: str, device: str) -> Predictor:
    """One Predictor per weights version; two kept: the active one and the one the lesson's Compare shows
    next to it (older ones are dropped when a run is activated)."""
    from pathlib import Path

    if not is_complete(Path(directory)):
        raise WeightsError(f"{directory} is incomplete: the model card does not list both models with matching "
                           "SHA-256 hashes (a run stopped while saving, or files were replaced).")
    return Predictor.from_directory(Path(directory), torch.device(device))


def load_models() -> LoadedModels:
    """The active weights on the best device, or a message saying what is missing and how to get it."""
    active = active_weights()
    if not (active.directory / CARD_FILE).is_file():
        return LoadedModels(None, f"No trained weights are installed (nothing in `{active.directory}`). "
                                  + HOW_TO_GET_WEIGHTS)
    try:
        device = choose_device("auto")
        return LoadedModels(_load_predictor(active.version, str(active.directory), str(device)), None)
    except (WeightsError, DeviceError) as exc:
        return LoadedModels(None, f"The weights in `{active.directory}` cannot be used: {exc} " + HOW_TO_GET_WEIGHTS)


# --- inputs -----------------------------------------------------------------------------------------


def process_uploads(files: Sequence[tuple[str, bytes]], masks: Sequence[tuple[str, bytes]] = ()) -> UploadBatch:
    """Bytes in, slices and messages out: the testable core of the uploaders."""
    return read_uploads(files, masks)


def set_batch(batch: UploadBatch, label: str, kind: str) -> None:
    st.session_state["predict_batch"] = batch
    st.session_state["predict_label"] = label
    st.session_state["predict_kind"] = kind
    st.session_state["predict_token"] = next(_tokens)


def clear_batch() -> None:
    for key in ("predict_batch", "predict_label", "predict_kind", "predict_token"):
        st.session_state.pop(key, None)


def _active_index() -> tuple[object, object]:
    try:
        from lggdemo.ui.dataset import active_dataset
    except ImportError:  # the shared dataset helper is not there: read the dataset directly
        from lggdemo.data import scan_dataset
        from lggdemo.sources import choose_dataset

        choice = choose_dataset()
        return choice, scan_dataset(choice.root, synthetic=choice.synthetic)
    return active_dataset()


def active_card() -> dict[str, Any]:
    """The active weights' card (whose split says which patients the models saw); empty when unreadable."""
    try:
        return read_card(active_weights().directory)
    except WeightsError:
        return {}


def _load_example() -> None:
    """Button callback: the next patient's tumour slices, their masks and clinical fields."""
    which = st.session_state.get("predict_example_n", 0)
    st.session_state["predict_example_n"] = which + 1
    try:
        choice, index = _active_index()
        case = example_case(index, which, card=active_card())  # type: ignore[arg-type]
    except (DatasetError, InputError, OSError) as exc:
        st.session_state["predict_example_error"] = f"No example could be loaded from the active dataset: {exc}"
        return
    st.session_state.pop("predict_example_error", None)
    kind = "synthetic phantom" if getattr(choice, "synthetic", False) else "dataset patient"
    grade = f", recorded grade {case.clinical.grade}" if case.clinical.grade else ""
    label = f"Example: {kind} {case.patient_id}, {case.seen} ({len(case.batch.slices)} tumour slices{grade})"
    set_batch(case.batch, label, "example")
    st.session_state["predict_seen"] = case.seen
    st.session_state["predict_age"] = case.clinical.age
    st.session_state["predict_sex"] = case.clinical.sex or "unknown"


def _uploads_changed() -> None:
    """Uploader callback: new files after an example must not inherit the example patient's age and sex."""
    if st.session_state.get("predict_kind") == "example":
        st.session_state["predict_age"] = None
        st.session_state["predict_sex"] = "unknown"


def render_inputs() -> None:
    left, right = st.columns([3, 2], gap="large")
    with left:
        st.subheader("Slices")
        files = st.file_uploader(
            "MRI slices (.tif, .png, .jpg): one or more slices of one patient. Add a ground-truth mask as "
            "`<name>_mask.*` to get the Dice.",
            type=UPLOAD_TYPES, accept_multiple_files=True, key="predict_files", on_change=_uploads_changed,
        ) or []
        with st.expander("Ground-truth masks in a separate upload (optional)"):
            masks = st.file_uploader("Masks named like their slice (with or without `_mask`)", type=UPLOAD_TYPES,
                                     accept_multiple_files=True, key="predict_masks", on_change=_uploads_changed) or []
        st.button("Try an example", on_click=_load_example, key="predict_example",
                  help="Loads a few tumour slices of one patient of the active dataset, with its age, sex and masks. "
                       "Press again for another patient.")
        if st.session_state.get("predict_example_error"):
            st.error(st.session_state["predict_example_error"])
    with right:
        st.subheader("Clinical fields")
        with st.form("predict_clinical"):
            st.number_input("Age at diagnosis (years; leave empty if unknown)", value=None, step=1.0, format="%.0f",
                            key="predict_age")
            st.radio("Sex", SEX_OPTIONS, horizontal=True, key="predict_sex")
            st.form_submit_button("Apply to the grade")
        st.caption("The grade model uses age and sex only; grade, histology and survival are never inputs.")

    signature = (tuple(f.file_id for f in files), tuple(f.file_id for f in masks))
    if files or masks:
        if signature != st.session_state.get("predict_upload_sig"):
            st.session_state["predict_upload_sig"] = signature
            batch = process_uploads([(f.name, f.getvalue()) for f in files], [(f.name, f.getvalue()) for f in masks])
            n_files = len(files) + len(masks)
            set_batch(batch, f"{len(batch.slices)} usable slice(s) from {n_files} uploaded file(s)", "upload")
    elif st.session_state.pop("predict_upload_sig", None) is not None:
        if st.session_state.get("predict_kind") == "upload":  # uploads removed: nothing left to show
            clear_batch()


def current_clinical() -> tuple[Clinical | None, list[str]]:
    """The submitted fields, validated; messages for anything missing or refused."""
    age = st.session_state.get("predict_age")
    sex = st.session_state.get("predict_sex", "unknown")
    typed = Clinical(age=None if age is None else float(age), sex=None if sex == "unknown" else sex)
    clinical, error = safe_clinical(typed)
    messages = []
    if error:
        messages.append(f"{error} The grade is not computed until this is fixed; the masks still are.")
    else:
        if age is None:
            messages.append("Age not given: the grade model treats it as unknown (it learnt an age-missing indicator), "
                            "and the age-only baseline does not apply.")
        if sex == "unknown":
            messages.append("Sex not given: treated as unknown.")
    return clinical, messages


# --- outputs ----------------------------------------------------------------------------------------


def grade_figure(p_g3: float) -> go.Figure:
    fig = go.Figure(go.Bar(
        x=[1 - p_g3, p_g3], y=["Grade II (G2)", "Grade III (G3)"], orientation="h",
        marker_color=["#4C78A8", "#E45756"], text=[f"{1 - p_g3:.0%}", f"{p_g3:.0%}"], textposition="auto",
    ))
    fig.update_layout(height=200, margin=dict(l=10, r=10, t=30, b=10), xaxis=dict(range=[0, 1], title="probability"),
                      title="Model's probability of each grade (patient level)")
    return fig


def render_withheld_grade(sentence: str, raw: float) -> None:
    """The card withholds the model's P(G3) (``gradeinfo``): one plain sentence with the cohort's base rate
    instead of the bar, the raw number only inside a collapsed expander."""
    st.info(sentence)
    with st.expander(RAW_SCORE_LABEL, expanded=False):
        st.markdown(f"Model output for this patient: **{raw:.2f}**. It is the sigmoid of the grade "
                    "network's patient-level logit, not a probability you can take at its word: on new patients it "
                    "ranked grade III no better than chance.")


def render_grade_value(p_g3: float, withheld: str | None, note: str | None, chart_key: str) -> None:
    """The patient's grade as both Predict modes show it: the bar, or the sentence that withholds it; then the note."""
    if withheld:
        render_withheld_grade(withheld, p_g3)
    else:
        st.plotly_chart(grade_figure(p_g3), key=chart_key)
    if note:
        st.info(note)


def render_grade(result: PredictionResult, predictor: Predictor) -> None:
    st.subheader("Grade")
    if result.patient_grade_prob is None:
        st.warning(result.grade_note or "No grade.")
        return
    col_fig, col_card = st.columns([3, 2])
    with col_fig:
        render_grade_value(result.patient_grade_prob, result.grade_withheld, result.grade_note, "predict_grade_chart")
    with col_card:
        auc = card_metric(predictor.card, "grade", "auc")
        base = card_metric(predictor.card, "grade", "age_baseline_auc")
        bal = card_metric(predictor.card, "grade", "balanced_accuracy")
        st.markdown(
            f"**How good is this model?** (model card `{predictor.card.get('version', 'n/a')}`, "
            "validation patients)\n\n"
            f"- Grade AUC: **{auc.text() if auc else 'n/a'}**\n"
            f"- Age-only baseline AUC: **{base.text() if base else 'n/a'}**\n"
            f"- Balanced accuracy: {bal.text() if bal else 'n/a'}"
        )
        if auc and base and auc.value <= base.value:
            st.caption("The image model does not beat age alone on the validation patients.")
        st.warning("This is **not a diagnosis**. " + NOT_FOR_DIAGNOSIS)


def _cam(kind: str, predictor: Predictor, result: PredictionResult, idx: int, image: np.ndarray) -> CamResult | str:
    key = ("predict_cam", kind, st.session_state.get("predict_token"), predictor.version, idx, result.clinical)
    cache = st.session_state.setdefault("predict_cams", {})
    if key not in cache:
        sl = result.slices[idx]
        try:
            if kind == "grade":
                if result.clinical is None:
                    return "Grade Grad-CAM needs accepted clinical fields."
                cache[key] = grade_cam(predictor.grade_model, predictor.grade_config, image, sl.mask, result.clinical)
            else:
                cache[key] = segmentation_cam(predictor.seg_model, predictor.seg_config, image, sl.mask)
        except (ValueError, RuntimeError) as exc:
            return f"Grad-CAM could not be computed: {exc}"
        if len(cache) > 16:
            cache.pop(next(iter(cache)))
    return cache[key]


def render_mask_quality(predictor: Predictor) -> None:
    """What a clinician should expect of the mask, from the card: its own validation patients and, when
    recorded, the recipe's cross-validated estimate over every patient."""
    cv_label = "cross-validated over every patient"
    seg = predictor.card.get("segmentation") or {}
    if isinstance(seg, dict) and (seg.get("cross_validation") or {}).get("postprocess") not in (None, seg.get("postprocess")):
        cv_label += " (scored before the 3D rule)"
    found = [(label, card_metric(predictor.card, "segmentation", "per_volume_dice_mean", cross_validated=cv))
             for label, cv in (("validation patients", False), (cv_label, True))]
    parts = [f"{label}: **{m.text()}**" for label, m in found if m]
    if parts:
        st.caption("**How good are these masks?** Per-volume Dice against expert masks — " + "; ".join(parts) + ".")


def _seen_text(predictor: Predictor, name: str) -> str | None:
    """The example's label, or for an upload the label its file name implies (None when it names no split patient)."""
    if st.session_state.get("predict_kind") == "example":
        return st.session_state.get("predict_seen")
    return seen_label_for_name(predictor.card, name)


def render_slice(result: PredictionResult, batch: UploadBatch, predictor: Predictor) -> None:
    names = [s.name for s in result.slices]
    st.subheader("Slices")
    if len(names) > 1:
        thumbs = [overlay_mask(channel_rgb(s.image, 1), p.mask, alpha=0.5)
                  for s, p in zip(batch.slices, result.slices, strict=True)]
        per_row = min(len(thumbs), 8)
        for start in range(0, len(thumbs), per_row):
            cols = st.columns(per_row)
            for col, i in zip(cols, range(start, min(start + per_row, len(thumbs))), strict=False):
                col.image(thumbs[i], caption=f"{names[i]} · {result.slices[i].area_px} px", width="stretch")
        idx = names.index(st.select_slider("Slice to inspect", options=names, key="predict_slice"))
    else:
        idx = 0
    sl, src = result.slices[idx], batch.slices[idx]

    c1, c2, c3 = st.columns(3)
    channel = c1.radio("Channel", CHANNELS, index=1, horizontal=True, key="predict_channel")
    alpha = c2.slider("Mask opacity", 0.0, 1.0, 0.45, 0.05, key="predict_alpha")
    mode = c3.radio("Mask drawing", ("fill", "outline"), horizontal=True, key="predict_mode")
    base = channel_rgb(src.image, CHANNELS.index(channel))

    col_img, col_stats = st.columns([3, 2])
    with col_img:
        st.caption(SLICE_RULE_CAPTION)
        pictures = [overlay_mask(base, sl.mask, alpha=alpha, mode=mode)]
        captions = [f"Predicted tumour on {channel}"]
        if src.truth is not None:
            pictures.append(overlay_mask(base, src.truth, alpha=alpha, mode=mode, colour=(64, 200, 64)))
            captions.append("Ground-truth mask")
        for col, picture, caption in zip(st.columns(2), pictures, captions, strict=False):  # 1 or 2 pictures
            col.image(picture, caption=caption, width="stretch")
    with col_stats:
        pct = f"{sl.area_pct_brain:.2f}% of brain" if sl.area_pct_brain is not None else "no brain pixels found"
        st.metric("Tumour area", f"{sl.area_px} px", pct, delta_color="off", delta_arrow="off")
        if sl.dice is not None:
            st.metric("Dice vs ground truth", f"{sl.dice:.3f}", f"truth: {sl.truth_area_px} px", delta_color="off",
                      delta_arrow="off")
            seen = _seen_text(predictor, sl.name)
            if seen:
                st.caption(f"Dice on a {seen}.")
        if sl.grade_prob is not None and result.grade_withheld is None:
            st.metric("This slice's P(G3)", f"{sl.grade_prob:.0%}")
        render_mask_quality(predictor)
        st.download_button("Download predicted mask (PNG)", sl.mask_png(),
                           file_name=f"{sl.name.rsplit('.', 1)[0]}_predicted_mask.png", mime="image/png",
                           key="predict_dl_mask", on_click="ignore")
    render_slice_correction(sl, src, predictor, idx, channel, result.clinical)
    for col, c in zip(st.columns(3), range(3), strict=True):
        col.image(channel_rgb(src.image, c), caption=CHANNELS[c], width="stretch")

    st.subheader("Grad-CAM")
    st.caption("Where the gradient of each model's output is large at one layer: a rough picture of what the network "
               "responds to, not a proof of what it used, and no sign that the prediction is right.")
    g_col, s_col = st.columns(2)
    for col, kind, title in ((g_col, "grade", "Grade model"), (s_col, "seg", "Segmentation model")):
        with col:
            cam = _cam(kind, predictor, result, idx, src.image)
            if isinstance(cam, str):
                st.warning(cam)
                continue
            a = st.slider(f"{title} heatmap opacity", 0.0, 1.0, 0.5, 0.05, key=f"predict_cam_alpha_{kind}")
            st.image(overlay_heatmap(base, cam.heatmap, alpha=a), caption=f"Grad-CAM · {title}: {cam.target}",
                     width=360)
            st.caption(f"Layer: {cam.layer}" + (f" · crop box (y0, x0, y1, x1) = {cam.box}" if kind == "grade" else ""))
            if cam.note:
                st.info(cam.note)

    st.divider()
    render_slice_lesson(src.image, src.truth, predictor, key="predict_teach")


def render_downloads(result: PredictionResult) -> None:
    st.subheader("Reports")
    c1, c2 = st.columns(2)
    c1.download_button("Download report (CSV)", report_csv(result), file_name="lgg_prediction.csv", mime="text/csv",
                       key="predict_dl_csv", on_click="ignore")
    c2.download_button("Download report (JSON)", report_json(result), file_name="lgg_prediction.json",
                       mime="application/json", key="predict_dl_json", on_click="ignore")


def predict_cached(predictor: Predictor, batch: UploadBatch, clinical: Clinical | None) -> PredictionResult:
    key = (st.session_state.get("predict_token"), predictor.version, clinical)
    held = st.session_state.get("predict_result")
    if held is None or held[0] != key:
        with st.spinner("Predicting…"):
            held = (key, predictor.predict_uploads(batch, clinical))
        st.session_state["predict_result"] = held
        st.session_state["predict_cams"] = {}
    return held[1]


def render_page() -> None:
    st.title("Predict")
    st.caption(NOT_FOR_DIAGNOSIS)
    mode = st.radio("Input", INPUT_MODES, horizontal=True, key="predict_input_mode",
                    help="Slices: one or more 2D slices. Whole patient: a Kaggle zip, NIfTI or DICOM volume, with a 3D "
                         "view, the tumour volume and NIfTI / DICOM SEG downloads.")
    models = load_models()
    if models.predictor is None:
        st.error(models.message)
        return
    predictor = models.predictor
    st.caption(f"Models: card `{predictor.version}` · running on {predictor.device_text} · "
               f"segmentation {predictor.seg_config.encoder} U-Net at {predictor.seg_config.image_size} px, "
               f"grade ResNet50 on {predictor.grade_config.image_size} px tumour crops")
    if mode == INPUT_MODES[1]:
        from lggdemo.ui.patient import render_patient_mode  # imports this module: loaded on demand

        render_patient_mode(predictor)
        return
    render_inputs()
    batch: UploadBatch | None = st.session_state.get("predict_batch")
    if batch is None:
        st.info("Upload one or more slices, or press **Try an example**.")
        return
    st.markdown(f"**Input:** {st.session_state.get('predict_label', '')}")
    for problem in batch.problems:
        st.warning(problem)
    for sl in batch.slices:
        for note in sl.notes:
            st.info(f"{sl.name}: {note}")
    if not batch.slices:
        st.error("None of the uploaded files could be used: see the messages above.")
        return
    clinical, messages = current_clinical()
    for m in messages:
        (st.error if clinical is None else st.info)(m)
    try:
        result = predict_cached(predictor, batch, clinical)
    except (InputError, ValueError, RuntimeError) as exc:
        st.error(f"The prediction failed: {exc}")
        return
    render_grade(result, predictor)
    render_slice(result, batch, predictor)
    render_downloads(result)
