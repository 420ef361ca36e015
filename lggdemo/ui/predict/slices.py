"""The Predict page's widgets: inputs (uploads, clinical fields, example), the cached models and the results.

Everything that can go wrong with a file or a field becomes a message on the page; only the library
(``data.imageio.read_uploads``, ``inference.predictor.Predictor``, ``inference.gradcam``) does the work, so what the page shows is
what a script calling the library would get.

State lives in ``st.session_state`` under ``predict_*`` keys: the current input batch with a token that
changes whenever the input does, so the prediction and each Grad-CAM are computed once per input,
clinical fields and model version, not on every widget click.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import streamlit as st

from lggdemo import NOT_FOR_DIAGNOSIS
from lggdemo.data.imageio import UploadBatch, read_uploads
from lggdemo.data.kaggle import Clinical, DatasetError
from lggdemo.inference.examples import dice_scope, example_case, seen_label_for_name
from lggdemo.inference.gradcam import CamResult, slice_cams
from lggdemo.inference.grade import grade_evidence
from lggdemo.inference.predictor import InputError, PredictionResult, Predictor
from lggdemo.models.card import card_metric
from lggdemo.models.weights import WeightsError
from lggdemo.ui.details import for_the_curious
from lggdemo.ui.predict import clinical as clinical_fields
from lggdemo.ui.predict.correct import render_slice_correction
from lggdemo.ui.predict.downloads import render_slice_downloads
from lggdemo.ui.predict.measurements import render_slice_diameters
from lggdemo.ui.predict.shared import (
    active_card,
    active_index,
    current_clinical,
    render_grade_value,
    render_mask_quality,
)
from lggdemo.ui.teach import render_slice_lesson, slice_choice
from lggdemo.viz.orientation import with_letters  # uploaded slices are in the kaggle_3m layout: its letters
from lggdemo.viz.overlay import CHANNELS, channel_rgb, overlay_heatmap, overlay_mask

UPLOAD_TYPES = ["tif", "tiff", "png", "jpg", "jpeg"]
SLICE_RULE_CAPTION = "Single slices: 2D clean-up only; whole patients also keep the largest 3D tumour."
_tokens = itertools.count(1)


# --- models ---------------------------------------------------------------------------------------


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


def _load_example() -> None:
    """Button callback: the next patient's tumour slices, their masks and clinical fields."""
    which = st.session_state.get("predict_example_n", 0)
    st.session_state["predict_example_n"] = which + 1
    try:
        choice, index = active_index()
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
    clinical_fields.take_example(case.clinical, input_id())


def input_id() -> str | None:
    """The current input, as :mod:`~lggdemo.ui.predict.clinical` files its age and sex under."""
    return None if st.session_state.get("predict_batch") is None else f"slices:{st.session_state.get('predict_token')}"


def render_inputs() -> None:
    left, right = st.columns([3, 2], gap="large")
    with left:
        st.subheader("Slices")
        files = st.file_uploader(
            "MRI slices (.tif, .png, .jpg): one or more slices of one patient. Add a ground-truth mask as "
            "`<name>_mask.*` to get the Dice.",
            type=UPLOAD_TYPES, accept_multiple_files=True, key="predict_files",
            on_change=clinical_fields.before_upload, args=("predict_files",),
        ) or []
        with st.expander("Ground-truth masks in a separate upload (optional)"):
            masks = st.file_uploader("Masks named like their slice (with or without `_mask`)", type=UPLOAD_TYPES,
                                     accept_multiple_files=True, key="predict_masks",
                                     on_change=clinical_fields.before_upload, args=("predict_masks",)) or []
        st.button("Try an example", on_click=_load_example, key="predict_example",
                  help="Loads a few tumour slices of one patient of the active dataset, with its age, sex and masks. "
                       "Press again for another patient.")
        if st.session_state.get("predict_example_error"):
            st.error(st.session_state["predict_example_error"])
    with right:
        st.subheader("Clinical fields")
        clinical_fields.render_fields("predict_clinical", input_id())

    signature = (tuple(f.file_id for f in files), tuple(f.file_id for f in masks))
    if files or masks:
        if signature != st.session_state.get("predict_upload_sig"):
            batch = process_uploads([(f.name, f.getvalue()) for f in files], [(f.name, f.getvalue()) for f in masks])
            n_files = len(files) + len(masks)
            set_batch(batch, f"{len(batch.slices)} usable slice(s) from {n_files} uploaded file(s)", "upload")
            clinical_fields.adopt(input_id())
            # only once the upload has been read: a rerun that interrupts the reading (a second click, a form
            # submitted meanwhile) reads it again instead of leaving the upload silently unread
            st.session_state["predict_upload_sig"] = signature
    elif st.session_state.pop("predict_upload_sig", None) is not None:
        if st.session_state.get("predict_kind") == "upload":  # uploads removed: nothing left to show
            clear_batch()


# --- outputs ----------------------------------------------------------------------------------------


def render_grade(result: PredictionResult, predictor: Predictor) -> None:
    st.subheader("Grade")
    if result.grade.raw_score is None:
        st.warning(result.grade.note or "No grade.")
        return
    col_fig, col_card = st.columns([3, 2])
    with col_fig:
        render_grade_value(result.grade, "predict_grade_chart")
    with col_card:
        ev = grade_evidence(predictor.card)
        bal = card_metric(predictor.card, "grade", "balanced_accuracy")
        st.markdown(
            f"**How good is this model?** (model card `{predictor.card.get('version', 'n/a')}`, {ev.where})\n\n"
            f"- Grade AUC: **{ev.auc.text() if ev.auc else 'n/a'}**\n"
            f"- Age-only baseline AUC: **{ev.age_only.text() if ev.age_only else 'n/a'}**"
            + (f"\n- Balanced accuracy (validation patients): {bal.text()}" if bal else "")  # none without a split
        )
        if ev.auc and ev.age_only and ev.auc.value <= ev.age_only.value:
            st.caption(f"The image model does not beat age alone ({ev.where}).")
        st.warning("This is **not a diagnosis**. " + NOT_FOR_DIAGNOSIS)


def _cams(predictor: Predictor, result: PredictionResult, idx: int, image: np.ndarray) -> dict[str, CamResult | str]:
    """Both Grad-CAMs of a slice ("grade", "seg"), computed together in one turn of the model lock and kept per
    input; a map that cannot be computed is the message to show instead."""
    key = ("predict_cam", st.session_state.get("predict_token"), predictor.version, idx, result.clinical)
    cache = st.session_state.setdefault("predict_cams", {})
    if key not in cache:
        try:
            grade, seg = slice_cams(predictor.grade_model, predictor.grade_config, predictor.seg_model,
                                    predictor.seg_config, image, result.slices[idx].mask, result.clinical)
        except WeightsError as exc:  # the PyTorch modules are loaded on the first heatmap
            return {k: f"Grad-CAM could not be computed: {exc}" for k in ("grade", "seg")}
        cache[key] = {
            "grade": "Grade Grad-CAM needs accepted clinical fields." if grade is None else
            f"Grad-CAM could not be computed: {grade}" if isinstance(grade, Exception) else grade,
            "seg": f"Grad-CAM could not be computed: {seg}" if isinstance(seg, Exception) else seg,
        }
        if len(cache) > 8:
            cache.pop(next(iter(cache)))
    return cache[key]


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
                col.image(with_letters(thumbs[i]), caption=f"{names[i]} · {result.slices[i].area_px} px", width="stretch")
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
            col.image(with_letters(picture), caption=caption, width="stretch")
    with col_stats:
        pct = f"{sl.area_pct_brain:.2f}% of brain" if sl.area_pct_brain is not None else "no brain pixels found"
        st.metric("Tumour area", f"{sl.area_px} px", pct, delta_color="off", delta_arrow="off")
        if sl.dice is not None:
            st.metric("Dice vs ground truth", f"{sl.dice:.3f}", f"truth: {sl.truth_area_px} px", delta_color="off",
                      delta_arrow="off")
            seen = _seen_text(predictor, sl.name)
            if seen:
                st.caption(f"Dice on {dice_scope(seen)}.")
        if sl.grade_prob is not None and result.grade.shows_slice_p_g3:
            st.metric("This slice's P(G3)", f"{sl.grade_prob:.0%}")
        render_mask_quality(predictor)
        render_slice_diameters(sl.mask, base)
        st.download_button("Download predicted mask (PNG)", sl.mask_png(),
                           file_name=f"{sl.name.rsplit('.', 1)[0]}_predicted_mask.png", mime="image/png",
                           key="predict_dl_mask", on_click="ignore")
    render_slice_correction(sl, src, predictor, idx, channel, result.clinical)
    for col, c in zip(st.columns(3), range(3), strict=True):
        col.image(with_letters(channel_rgb(src.image, c)), caption=CHANNELS[c], width="stretch")

    st.subheader("Grad-CAM")
    st.caption("Where the gradient of each model's output is large at one layer: a rough picture of what the network "
               "responds to, not a proof of what it used, and no sign that the prediction is right.")
    g_col, s_col = st.columns(2)
    cams = _cams(predictor, result, idx, src.image)
    for col, kind, title in ((g_col, "grade", "Grade model"), (s_col, "seg", "Segmentation model")):
        with col:
            cam = cams[kind]
            if isinstance(cam, str):
                st.warning(cam)
                continue
            a = st.slider(f"{title} heatmap opacity", 0.0, 1.0, 0.5, 0.05, key=f"predict_cam_alpha_{kind}")
            st.image(with_letters(overlay_heatmap(base, cam.heatmap, alpha=a)), caption=f"Grad-CAM · {title}: {cam.target}",
                     width=360)
            for_the_curious([f"Layer explained: `{cam.layer}`",
                             f"Tumour crop the grade model saw, (y0, x0, y1, x1) px: {cam.box}" if kind == "grade" else ""])
            if cam.note:
                st.info(cam.note)

    st.divider()
    render_slice_lesson(src.image, src.truth, predictor, key="predict_teach", probability=sl.probability,
                        choice=slice_choice([p.probability for p in result.slices], names, idx, "predict_slice", names))


def predict_cached(predictor: Predictor, batch: UploadBatch, clinical: Clinical | None) -> PredictionResult:
    key = (st.session_state.get("predict_token"), predictor.version, clinical)
    held = st.session_state.get("predict_result")
    if held is None or held[0] != key:
        with st.spinner("Predicting…"):
            held = (key, predictor.predict_uploads(batch, clinical))
        st.session_state["predict_result"] = held
        st.session_state["predict_cams"] = {}
    return held[1]


def render_slices_mode(predictor: Predictor) -> None:
    """Slices mode: uploads or an example, masks, grade, Grad-CAM, the lesson, downloads."""
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
    render_slice_downloads(result, batch, str(predictor.card.get("version", "?")))
