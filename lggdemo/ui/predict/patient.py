"""The Predict page's whole-patient mode: upload a patient, assign its sequences, see masks, 3D view, volume, grade.

Only widgets live here: reading (``lggdemo.patient.readers``), inference (``wholepatient.predict_volume``), the 3D
figure (``view3d``) and every download (``exporters``) are library calls, the same ones
``lggdemo-predict`` makes. State is kept in ``st.session_state`` under ``patient_*`` keys, with a
token that changes whenever the input does, so inference runs once per input, assignment, clinical fields and
model version -- not on every slider move.

The slice view is :func:`_render_slice_detail`: the one call site to extend with the slice-mode teaching
layer (error maps, threshold slider), which takes (volume, probabilities, mask, truth, index).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import streamlit as st

from lggdemo import NOT_FOR_DIAGNOSIS
from lggdemo.data.kaggle import DatasetError
from lggdemo.inference.examples import dice_scope, example_patients, seen_label, seen_label_for_name
from lggdemo.inference.grade import grade_evidence
from lggdemo.inference.predictor import Predictor
from lggdemo.inference.wholepatient import VolumePrediction, predict_volume
from lggdemo.metrics.segmentation import dice
from lggdemo.models.preprocess import ClinicalInputError
from lggdemo.patient.readers import PatientSource, open_files
from lggdemo.patient.readers.kaggle import index_volume
from lggdemo.patient.volume import Volume, VolumeError
from lggdemo.ui.dataset import active_dataset
from lggdemo.ui.details import for_the_curious
from lggdemo.ui.predict import clinical as clinical_fields
from lggdemo.ui.predict.correct import render_patient_correction
from lggdemo.ui.predict.downloads import render_patient_downloads
from lggdemo.ui.predict.measurements import cached_measures, render_measurements, volume_range_delta
from lggdemo.ui.predict.orientation import axcodes_for, letters_for, render_input_checks, slice_label, volume_state
from lggdemo.ui.predict.shared import (
    active_card,
    current_clinical,
    render_grade_value,
    render_mask_quality,
)
from lggdemo.ui.teach import REMOVED_COLOUR, render_slice_lesson, slice_choice
from lggdemo.viz.orientation import with_letters
from lggdemo.viz.overlay import CHANNELS, channel_rgb, overlay_mask
from lggdemo.viz.view3d import figure_3d

UPLOAD_TYPES = ["zip", "nii", "gz"]
NONE_OPTION = "(none)"
_tokens = itertools.count(1)


@dataclass(frozen=True)
class _Loaded:
    """What the current input became: a source to build (uploads) or a ready volume (the example)."""

    label: str
    source: PatientSource | None = None
    volume: Volume | None = None
    seen: str | None = None  # infer.seen_label: whether the active weights trained on this patient


def _set_input(loaded: _Loaded | None, error: str | None = None) -> None:
    st.session_state["patient_input"] = loaded
    st.session_state["patient_error"] = error
    st.session_state["patient_token"] = next(_tokens)
    for key in ("patient_result", "patient_figure", "patient_downloads"):
        st.session_state.pop(key, None)


def _load_example() -> None:
    """Button callback: the next patient of the active dataset (the phantoms when there is no data), whole."""

    which = st.session_state.get("patient_example_n", 0)
    st.session_state["patient_example_n"] = which + 1
    card = active_card()
    try:
        choice, index = active_dataset()
        pids = example_patients(index, card)  # the weights' validation patients first
        pid = pids[which % len(pids)]
        volume = index_volume(index, pid)
    except (DatasetError, VolumeError, OSError, IndexError) as exc:
        _set_input(None, f"No example patient could be loaded from the active dataset: {exc}")
        return
    clinical = index.clinical_for(pid)
    kind = "synthetic phantom" if getattr(choice, "synthetic", False) else "dataset patient"
    grade = f", recorded grade {clinical.grade}" if clinical.grade else ""
    seen = seen_label(card, pid)
    _set_input(_Loaded(f"Example: {kind} {pid}, {seen} ({volume.n_slices} slices{grade})", volume=volume, seen=seen))
    clinical_fields.take_example(clinical, input_id())  # type: ignore[arg-type]


def input_id() -> str | None:
    """The current input, as :mod:`~lggdemo.ui.predict.clinical` files its age and sex under."""
    return None if st.session_state.get("patient_input") is None else f"patient:{st.session_state.get('patient_token')}"


def open_uploads(files: list[tuple[str, bytes]]) -> PatientSource:
    """Bytes in, an opened patient out (VolumeError for anything unusable): the testable core of the uploader."""

    return open_files(files)  # named after the study (readers.study_name), files not used listed in .unused()


def render_inputs() -> None:
    left, right = st.columns([3, 2], gap="large")
    with left:
        files = st.file_uploader(
            "One patient: a Kaggle-layout folder as .zip (slices, masks optional), NIfTI file(s) (.nii, .nii.gz: one "
            "3-channel file or one file per sequence), or a DICOM study as .zip",
            type=UPLOAD_TYPES, accept_multiple_files=True, key="patient_files",
            on_change=clinical_fields.before_upload, args=("patient_files",)) or []
        st.button("Try an example patient", on_click=_load_example, key="patient_example",
                  help="Loads a whole patient of the active dataset (the phantoms when there is no data), with its "
                       "masks, age and sex. Press again for another patient.")
    with right:
        clinical_fields.render_fields("patient_clinical", input_id())  # the slice mode's keys, this input's values
    signature = tuple(f.file_id for f in files)
    if files and signature != st.session_state.get("patient_upload_sig"):
        try:
            source = open_uploads([(f.name, f.getvalue()) for f in files])
        except VolumeError as exc:
            _set_input(None, str(exc))
        else:
            _set_input(_Loaded(f"{source.name}: {source.kind} upload ({len(files)} file(s))", source=source))
        clinical_fields.adopt(input_id())
        # only once the upload has been read: a rerun that interrupts the reading reads it again
        st.session_state["patient_upload_sig"] = signature
    elif not files and st.session_state.get("patient_upload_sig"):
        st.session_state["patient_upload_sig"] = None
        held = st.session_state.get("patient_input")
        if held is None or held.volume is None:  # uploads removed: nothing left to show (an example stays)
            _set_input(None)


def render_assignment(source: PatientSource) -> dict[str, int | None]:
    """One selectbox per role when the input has several files or series; the guess preselected."""
    st.markdown("**Which file is which sequence?** (a missing sequence is filled with FLAIR, as in the dataset)")
    options = [NONE_OPTION, *source.options]
    chosen: dict[str, int | None] = {}
    for col, role in zip(st.columns(len(source.roles)), source.roles, strict=True):
        guess = source.guess.get(role)
        pick = col.selectbox(role, options, index=0 if guess is None else guess + 1,
                             key=f"patient_role_{role}_{st.session_state.get('patient_token')}")
        chosen[role] = None if pick == NONE_OPTION else options.index(pick) - 1
    return chosen


def _run(predictor: Predictor, volume: Volume, key: tuple[object, ...]) -> VolumePrediction:
    held = st.session_state.get("patient_result")
    if held is None or held[0] != key:
        bar = st.progress(0.0, text="Starting…")
        clinical = key[-1]
        result = predict_volume(predictor, volume, clinical,  # type: ignore[arg-type]
                                progress=lambda f, msg: bar.progress(min(1.0, f), text=msg))
        bar.empty()
        held = (key, result)
        st.session_state["patient_result"] = held
        st.session_state.pop("patient_figure", None)
        st.session_state.pop("patient_downloads", None)
    return held[1]


def render_summary(result: VolumePrediction, predictor: Predictor, seen: str | None = None) -> None:
    c1, c2, c3, c4 = st.columns(4)
    if result.tumour_ml is not None:
        c1.metric("Tumour volume", f"{result.tumour_ml:.1f} mL", volume_range_delta(result), delta_color="off",
                  delta_arrow="off", help=f"{result.tumour_voxels} voxels; the range is explained under Measurements")
    else:
        c1.metric("Tumour volume", f"{result.tumour_voxels} voxels", f"spacing unknown · {volume_range_delta(result)}",
                  delta_color="off", delta_arrow="off")
    c2.metric("Slices with tumour", f"{len(result.tumour_slices)}")
    if result.dice is not None:
        c3.metric("Per-volume Dice vs uploaded masks", f"{result.dice:.3f}", f"truth: {result.truth_voxels} voxels",
                  delta_color="off", delta_arrow="off")
        if seen:
            c3.caption(f"Dice on {dice_scope(seen)}.")
    if result.grade.shown_p_g3 is not None:
        c4.metric("Patient P(G3)", f"{result.grade.shown_p_g3:.0%}")
    if result.tumour_ml is None:
        st.caption("The input records no voxel spacing (the Kaggle layout does not), so the volume is given in voxels "
                   "of the 256×256 slices, not in mL.")
    if result.removed_voxels:
        st.caption(f"3D post-processing kept the largest tumour component and removed {result.removed_voxels} voxels "
                   "in separate components (a genuine second focus would be removed too).")
        for_the_curious(["The rule: `lggdemo.models.postprocess.keep_main_components_by_patient` (3D connected "
                         "components over the whole patient; only the largest is kept)."])
    render_mask_quality(predictor)
    st.subheader("Grade (one per patient)")
    if result.grade.raw_score is None:
        st.warning(result.grade.note or "No grade.")
    else:
        render_grade_value(result.grade, "patient_grade_chart")
        ev = grade_evidence(predictor.card)
        st.caption(f"Grade AUC ({ev.where}): {ev.auc.text() if ev.auc else 'n/a'}; age alone: "
                   f"{ev.age_only.text() if ev.age_only else 'n/a'}.")
        caveat = CALIBRATED_GRADE_CAVEAT if result.grade.calibration is not None else PAGE_GRADE_CAVEAT
        st.warning(caveat + " " + NOT_FOR_DIAGNOSIS)


#: Beside a calibrated P(G3): what calibration on the cross-validation's patients does and does not promise.
CALIBRATED_GRADE_CAVEAT = ("P(G3) is Platt-calibrated on out-of-fold predictions of the training cohort: on patients "
                           "like those it is as reliable as the Train page's reliability diagram shows; other "
                           "scanners or cohorts may shift it.")
#: The reports' caveat (``inference.grade.GRADE_CAVEAT``) names JSON fields; the page says the same in words.
PAGE_GRADE_CAVEAT = ("The grade score is the model's output, not a calibrated probability: compare the card's grade AUC "
                     "with its age-only baseline (and their wide intervals) before reading anything into it.")


def _render_slice_detail(volume: Volume, probs: np.ndarray, mask: np.ndarray, truth: np.ndarray | None,
                         index: int, removed: np.ndarray | None = None) -> None:
    """One slice of the patient: overlay, ground truth, per-slice numbers. The teaching layer's call site."""
    image = volume.slices[index]
    c1, c2 = st.columns(2)
    channel = c1.radio("Channel", CHANNELS, index=1, horizontal=True, key="patient_channel")
    alpha = c2.slider("Mask opacity", 0.0, 1.0, 0.45, 0.05, key="patient_alpha")
    base = channel_rgb(image, CHANNELS.index(channel))
    picture = overlay_mask(base, mask[index], alpha=alpha)
    cut = int(removed[index].sum()) if removed is not None else 0
    if cut:  # what the whole-patient rule took away on this slice, in the teaching layer's "removed" colour
        picture = overlay_mask(picture, removed[index], alpha=0.9, colour=REMOVED_COLOUR)  # type: ignore[index]
    pictures = [picture]
    captions = [f"Predicted tumour on {channel} · slice {index + 1} of {volume.n_slices}"]
    if truth is not None:
        pictures.append(overlay_mask(base, truth[index].astype(np.uint8), alpha=alpha, colour=(64, 200, 64)))
        captions.append("Ground-truth mask")
    for col, picture, caption in zip(st.columns(2), pictures, captions, strict=False):
        col.image(with_letters(picture, letters_for(volume)), caption=caption, width="stretch")
    area = int(mask[index].sum())
    line = f"Tumour on this slice: {area} px · max tumour probability {float(probs[index].max()):.2f}"
    if cut:
        line += f" · violet: {cut} px removed by the 3D rule (not part of the largest tumour component)"
    if truth is not None:
        line += f" · slice Dice {dice(mask[index], truth[index]):.3f}"
    st.caption(line)


def render_patient_mode(predictor: Predictor) -> None:
    """The whole-patient mode of the Predict page."""
    render_inputs()
    if st.session_state.get("patient_error"):
        st.error(st.session_state["patient_error"])
    loaded: _Loaded | None = st.session_state.get("patient_input")
    if loaded is None:
        st.info("Upload a patient (Kaggle zip, NIfTI file(s) or a DICOM zip), or press **Try an example patient**.")
        return
    st.markdown(f"**Input:** {loaded.label}")
    assignment = None
    if loaded.source is not None and loaded.source.needs_assignment:
        assignment = render_assignment(loaded.source)
    try:
        volume = loaded.volume or _volume_cached(loaded.source, assignment)  # type: ignore[arg-type]
    except VolumeError as exc:
        st.error(str(exc))
        return
    volume = render_input_checks(loaded.source, assignment, volume, st.session_state.get("patient_token"))
    for note in volume.provenance.notes:
        st.info(note)
    clinical, messages = current_clinical()
    for m in messages:
        (st.error if clinical is None else st.info)(m)
    key = (st.session_state.get("patient_token"), tuple(sorted((assignment or {}).items())), predictor.version,
           volume_state(volume), clinical)
    try:
        result = _run(predictor, volume, key)
    except (VolumeError, ClinicalInputError, ValueError, RuntimeError) as exc:
        st.error(f"The prediction failed: {exc}")
        return
    render_summary(result, predictor, loaded.seen or seen_label_for_name(predictor.card, volume.name))
    render_measurements(volume, result, key)

    st.subheader("Slices")
    tumour = result.tumour_slices
    start = max(range(volume.n_slices), key=lambda i: int(result.mask[i].sum())) + 1 if tumour else volume.n_slices // 2 + 1
    token = st.session_state.get("patient_token")
    idx = st.slider(slice_label(volume.grid), 1, volume.n_slices, start, key=f"patient_slice_{token}")
    _render_slice_detail(volume, result.probability, result.mask, volume.truth, idx - 1, result.removed)
    render_patient_correction(volume, result, idx - 1, st.session_state.get("patient_channel", CHANNELS[1]),
                              (token, predictor.version), str(predictor.card.get("version", "?")), clinical)
    st.caption("The lesson below takes this slice on its own (2D clean-up only); the whole-patient mask above also "
               "keeps only the largest 3D tumour component.")
    render_slice_lesson(volume.slices[idx - 1], None if volume.truth is None else volume.truth[idx - 1], predictor,
                        key="patient_teach", probability=result.probability[idx - 1],
                        choice=slice_choice(result.probability, [f"slice {i}" for i in range(1, volume.n_slices + 1)],
                                            idx - 1, f"patient_slice_{token}", range(1, volume.n_slices + 1)))

    st.subheader("3D view")
    fig_held = st.session_state.get("patient_figure")
    if fig_held is None or fig_held[0] != key:
        fig_held = (key, figure_3d(volume.slices, result.mask, volume.spacing, title=volume.name,
                                   axcodes=axcodes_for(volume)))
        st.session_state["patient_figure"] = fig_held
    st.plotly_chart(fig_held[1], key="patient_3d")
    st.caption("Drag to rotate, scroll to zoom. Red: the predicted tumour; translucent grey: the head (from "
               "intensities).")
    render_patient_downloads(volume, result, key, (token, predictor.version), predictor.card,
                             measures=cached_measures(volume, result, key))


def _volume_cached(source: PatientSource, assignment: dict[str, int | None] | None) -> Volume:
    key = (st.session_state.get("patient_token"), tuple(sorted((assignment or {}).items())))
    held = st.session_state.get("patient_volume")
    if held is None or held[0] != key:
        with st.spinner("Reading the patient…"):
            held = (key, source.volume(assignment))
        st.session_state["patient_volume"] = held
    return held[1]
