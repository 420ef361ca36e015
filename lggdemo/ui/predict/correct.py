"""The mask editor on Predict: correct the model's mask of one slice, see what the edit did, save it to learn from.

One entry point, :func:`render_editor`, for both views of a slice (the slice view and the whole-patient
scroller). Only widgets live here: every edit is :mod:`lggdemo.corrections.edit` (pure arrays), what was
drawn is read by :mod:`lggdemo.corrections.drawing`, the numbers come from :mod:`lggdemo.teach` and saving
is :mod:`lggdemo.corrections.store`.

The drawing component (``streamlit-drawable-canvas``) shows the slice with the current mask on a canvas ``SCALE``
times its size, zoomed down to the column's width (:func:`lggdemo.ui.style.fit_canvas`; strokes still arrive in
canvas pixels). Each gesture reaches the server once the mouse is released; it is applied to the mask
and the canvas is drawn afresh (a new key) over the new mask, so the canvas never holds more than one
gesture and the editor's own Undo -- not the component's -- is the one history. The corrected mask lives
in this tab's ``st.session_state`` until it is saved or reset; nothing is shared with other visitors.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
from PIL import Image

from lggdemo.corrections import (
    TOOLS,
    CorrectionError,
    EditError,
    EditHistory,
    drawing_mode,
    edits_from_drawing,
    save_correction,
)
from lggdemo.data.imageio import UploadBatch, UploadedSlice, encode_png, resize_mask
from lggdemo.data.kaggle import Clinical, DatasetError
from lggdemo.inference.predictor import PredictionResult, Predictor, SlicePrediction
from lggdemo.inference.wholepatient import VolumePrediction
from lggdemo.metrics.segmentation import dice
from lggdemo.patient.exporters import mask_nifti, safe_name
from lggdemo.patient.volume import Volume, VolumeError
from lggdemo.teach import ERROR_MARKDOWN_COLOURS, ERROR_NAMES, FN, FP, TP, dice_breakdown, draw_errors, error_map
from lggdemo.ui.access import can_manage
from lggdemo.ui.dataset import active_dataset
from lggdemo.ui.style import fit_canvas, inline_image
from lggdemo.viz.orientation import with_letters
from lggdemo.viz.overlay import CHANNELS, channel_rgb, overlay_mask

#: Canvas pixels per mask pixel: a 256² slice is drawn on a 512² canvas.
SCALE = 2
STATE_KEY = "correct_state"
#: Slices whose edits a tab keeps (each at most 50 undo steps of 64 KiB); the oldest are forgotten first.
MAX_HISTORIES = 64
BRUSH_COLOURS = {"Brush": "rgba(255, 64, 64, 0.55)", "Eraser": "rgba(90, 170, 255, 0.6)",
                 "Delete a piece": "rgba(255, 212, 0, 0.9)"}
SAVE_LOCKED = ("Saving corrections as training examples is reserved for the operator of this server; you may still "
               "edit and download the corrected mask.")
TOOL_HELP = ("Brush: drag to paint tumour. Eraser: drag to remove it. Delete a piece: click a piece of the mask to "
             "remove all of it.")


@dataclass(frozen=True)
class SliceTarget:
    """What the editor corrects: one 256² slice, the model's mask of it, and where it came from."""

    image: np.ndarray  # (256, 256, 3) uint8
    model_mask: np.ndarray  # (256, 256) 0/1: what the model drew (the whole-patient mask in that mode)
    truth: np.ndarray | None  # (256, 256) 0/1 ground truth, when the input came with one
    name: str  # the slice's file name, or "<patient> slice <n>": file names and the provenance's source
    weights_version: str  # the card version of the weights that drew ``model_mask``
    mode: str = "slice"  # "slice" | "whole patient"
    patient_id: str | None = None
    slice_number: int | None = None
    clinical: Clinical | None = None

    def signature(self) -> str:
        """Changes whenever the slice, the model's mask or the weights do: a new input starts a new history."""
        h = hashlib.sha1(np.ascontiguousarray(self.image).tobytes())
        h.update(np.ascontiguousarray(self.model_mask, dtype=np.uint8).tobytes())
        h.update(self.weights_version.encode())
        return h.hexdigest()


@dataclass
class _Held:
    signature: str
    history: EditHistory
    canvas: int = 0  # bumped after every applied gesture: the canvas is drawn afresh under a new key
    message: str | None = None


def _states() -> dict[str, _Held]:
    return st.session_state.setdefault(STATE_KEY, {})


def held_history(key: str, target: SliceTarget) -> _Held:
    """This editor's state for ``target``; a new one when the slice, mask or weights changed."""
    states = _states()
    held = states.get(key)
    if held is None or held.signature != target.signature():
        held = _Held(target.signature(), EditHistory.start(target.model_mask))
        states.pop(key, None)
        states[key] = held  # newest last
        while len(states) > MAX_HISTORIES:
            states.pop(next(iter(states)))
    return held


def edited_masks(prefix: str) -> dict[str, np.ndarray]:
    """The corrected masks of every editor whose key starts with ``prefix`` and that holds an edit."""
    return {k: h.history.current for k, h in _states().items() if k.startswith(prefix) and h.history.edited}


def _canvas(background: bytes, tool: str, brush_px: int, key: str) -> dict[str, Any] | None:
    """The drawing component, its drawing as Fabric JSON (tests replace this function).

    Imported here, not at the top: the component registers its file-backed assets when imported, which
    needs a running Streamlit (its manifest), so importing it while a test collects this module would fail.
    """
    from streamlit_drawable_canvas import st_canvas

    side = 256 * SCALE
    freehand = drawing_mode(tool) == "freedraw"
    result = st_canvas(background_image=background, width=side, height=side, drawing_mode=drawing_mode(tool),
                       stroke_width=brush_px * 2 * SCALE if freehand else 2, stroke_color=BRUSH_COLOURS[tool],
                       fill_color=BRUSH_COLOURS[tool], point_display_radius=4, key=key)
    return result.json_data


def _background(image: np.ndarray, mask: np.ndarray, channel: int) -> bytes:
    picture = with_letters(overlay_mask(channel_rgb(image, channel), mask, alpha=0.45))  # letters: kaggle_3m layout
    big = Image.fromarray(picture).resize((256 * SCALE, 256 * SCALE), Image.NEAREST)
    buf = io.BytesIO()
    big.save(buf, format="PNG")
    return buf.getvalue()


def _undo(key: str) -> None:
    held = _states()[key]
    held.history, held.canvas, held.message = held.history.undo(), held.canvas + 1, None


def _reset(key: str) -> None:
    held = _states()[key]
    held.history, held.canvas, held.message = held.history.reset(), held.canvas + 1, None


def _take_drawing(held: _Held, drawing: dict[str, Any] | None, tool: str) -> bool:
    """Apply what was drawn; True when the mask (or a message) changed and the canvas must be drawn afresh."""
    try:
        edits = edits_from_drawing(drawing, tool=tool, scale=SCALE)
    except ValueError:
        return False
    if not edits:
        return False
    before = held.history
    try:
        held.history = held.history.apply(*edits)
        held.message = None if held.history is not before else (
            "No piece of the mask there: click on (or right next to) a red piece to delete it."
            if tool == TOOLS[2] else "That stroke changed no pixel.")
    except EditError as exc:
        held.message = f"That edit could not be applied: {exc}"
    held.canvas += 1
    return True


def _metrics(target: SliceTarget, current: np.ndarray, base: np.ndarray) -> None:
    model_area, area = int(target.model_mask.sum()), int(current.sum())
    st.metric("Tumour area (corrected)", f"{area} px", f"{area - model_area:+d} px vs the model's {model_area} px",
              delta_color="off", delta_arrow="off")
    if target.truth is None:
        st.caption("No ground-truth mask: Dice and the errors need one (upload `<slice>_mask.*` or use an example).")
        return
    model, fixed = dice_breakdown(target.model_mask, target.truth), dice_breakdown(current, target.truth)
    # one under the other: side by side, a projector's narrow column cut their labels short
    st.metric("Dice vs ground truth (corrected)", f"{fixed.dice:.3f}",
              f"{fixed.dice - model.dice:+.3f} vs the model's {model.dice:.3f}")
    st.metric("IoU (corrected)", f"{fixed.iou:.3f}", f"{fixed.iou - model.iou:+.3f} vs the model's {model.iou:.3f}")
    errors = error_map(current, target.truth)
    inline_image(with_letters(draw_errors(base, errors)), "Corrected mask against the ground truth", width=300)
    what = {TP: "in both", FP: "drawn, not in the truth", FN: "in the truth, not drawn"}
    st.markdown("\n".join(f"- :{ERROR_MARKDOWN_COLOURS[k]}[■ **{ERROR_NAMES[k]}**]: {errors.counts.of(k)} px — {what[k]}"
                          for k in (TP, FP, FN)))


def _save(target: SliceTarget, current: np.ndarray, edits: int) -> None:
    clinical, protect = target.clinical, []
    try:
        _, index = active_dataset()
        protect = [index.root]  # never write into the dataset
        if target.patient_id in index.patients:  # a dataset patient: its recorded grade, age and sex
            clinical = index.clinical_for(target.patient_id)
    except DatasetError:
        pass
    try:
        saved = save_correction(target.image, current, target.model_mask, weights_version=target.weights_version,
                                source=target.name, patient_id=target.patient_id, source_slice=target.slice_number,
                                mode=target.mode, truth=target.truth, clinical=clinical, edits=edits,
                                protect=protect)
    except CorrectionError as exc:
        st.error(f"Not saved: {exc}")
        return
    st.success(f"Saved as training example **{saved.id}**: it is listed on the Train page, and the sidebar's "
               "retraining can fine-tune the active weights with it.")


def render_editor(target: SliceTarget, *, key: str, history: str | None = None, channel: str = CHANNELS[1],
                  extras: Callable[[np.ndarray], None] | None = None) -> np.ndarray:
    """The "Correct this mask" editor for one slice; returns the current (corrected or model's) mask.

    ``key`` prefixes the widgets (one set per view); ``history`` names this slice's edits (default ``key``),
    so each slice of a view keeps its own corrections while the view scrolls. ``channel`` is the page's
    channel choice (FLAIR by default) for the picture under the canvas; ``extras(current)`` draws what only
    the caller knows (downloads, the patient's volume) beside the numbers. Drawn in a container keyed
    ``{key}_editor`` (CSS class ``st-key-{key}_editor``) for browser tests.
    """
    history = history or key
    if not st.toggle("Correct this mask", key=f"{key}_open",
                     help="Edit the model's mask by hand: paint, erase, delete pieces; undo and reset. The numbers "
                          "update after each edit."):
        return held_history(history, target).history.current
    with st.container(key=f"{key}_editor", border=True):
        return _render_open(target, key, history, channel, extras)


def _render_open(target: SliceTarget, key: str, history: str, channel: str,
                 extras: Callable[[np.ndarray], None] | None) -> np.ndarray:
    held = held_history(history, target)
    c_tool, c_size = st.columns([3, 2], vertical_alignment="bottom")
    tool = c_tool.radio("Tool", TOOLS, index=0, horizontal=True, key=f"{key}_tool", help=TOOL_HELP)
    brush = c_size.slider("Brush size (radius, px)", 1, 20, 4, key=f"{key}_brush",
                          disabled=drawing_mode(tool) != "freedraw")
    with st.container(horizontal=True):  # buttons at their own width, wrapping on a narrow screen
        st.button("Undo", key=f"{key}_undo", on_click=_undo, args=(history,), disabled=not held.history.can_undo)
        st.button("Reset to the model's mask", key=f"{key}_reset", on_click=_reset, args=(history,),
                  disabled=not held.history.can_undo)
    shown = CHANNELS.index(channel) if channel in CHANNELS else 1
    base = channel_rgb(target.image, shown)
    left, right = st.columns([3, 2], gap="medium")
    with left:
        fit_canvas(f"{key}_fit", 256 * SCALE)
        with st.container(key=f"{key}_fit"):  # zoomed to the column's width (projectors): see ui.style
            drawing = _canvas(_background(target.image, held.history.current, shown), tool, brush,
                              f"{history}_canvas_{held.canvas}")
        if _take_drawing(held, drawing, tool):
            st.rerun()
        st.caption(f"{channel} with the corrected mask (red), scaled to fit this column · {held.history.n_edits} "
                   f"edit(s) since the model's mask · {TOOL_HELP}")
        if held.message:
            st.info(held.message)
    current = held.history.current
    with right:
        _metrics(target, current, base)
        if extras is not None:
            extras(current)
        manage = can_manage()
        if st.button("Save as a training example", key=f"{key}_save", disabled=not manage, type="primary",
                     help="Stores this slice and the corrected mask under the runs folder (corrections/), never in "
                          "the dataset, for the sidebar's fine-tuning.") and manage:
            _save(target, current, held.history.n_edits)
        if not manage:
            st.caption(SAVE_LOCKED)
    return current


# --- the two views' call sites -------------------------------------------------------------------------

_SLICE_NAME = re.compile(r"^(?P<pid>.+)_(?P<num>\d+)$")


def patient_and_slice(name: str) -> tuple[str | None, int | None]:
    """``TCGA_CS_4942_19970222_12.tif`` -> (``TCGA_CS_4942_19970222``, 12); (None, None) for other names."""
    found = _SLICE_NAME.match(Path(name).stem)
    return (found.group("pid"), int(found.group("num"))) if found else (None, None)


def render_slice_correction(slice_pred: SlicePrediction, upload: UploadedSlice, predictor: Predictor, idx: int,
                            channel: str, clinical: Clinical | None) -> None:
    """The editor under the slice view's picture, with the corrected mask as a PNG at the upload's own size."""
    pid, number = patient_and_slice(slice_pred.name)
    target = SliceTarget(upload.image, slice_pred.mask, upload.truth, slice_pred.name,
                         str(predictor.card.get("version", "?")), "slice", pid, number, clinical)

    def download(current: np.ndarray) -> None:
        st.download_button("Download corrected mask (PNG)", encode_png(resize_mask(current, slice_pred.original_size)),
                           file_name=f"{Path(slice_pred.name).stem}_corrected_mask.png", mime="image/png",
                           key="predict_correct_dl", on_click="ignore", width="stretch")

    render_editor(target, key="predict_correct", history=f"predict_correct:{idx}", channel=channel, extras=download)


def slice_corrections(result: PredictionResult, batch: UploadBatch, weights_version: str) -> dict[int, np.ndarray]:
    """Slice mode's corrected masks of *this* input (0-based slice index -> mask): a history kept from an earlier
    input with the same slice index is left out (its slice, mask or weights differ: see ``SliceTarget.signature``)."""
    out = {}
    for idx, (pred, upload) in enumerate(zip(result.slices, batch.slices, strict=False)):
        held = _states().get(f"predict_correct:{idx}")
        if held is None or not held.history.edited:
            continue
        target = SliceTarget(upload.image, pred.mask, upload.truth, pred.name, weights_version)
        if held.signature == target.signature():
            out[idx] = held.history.current
    return out


def patient_histories(token: object) -> str:
    """The prefix of one patient's per-slice histories; ``token`` names the input and the weights."""
    return f"patient_correct:{hashlib.sha1(repr(token).encode()).hexdigest()[:12]}:"


def corrected_volume(mask: np.ndarray, token: object) -> tuple[np.ndarray, int]:
    """The whole-patient mask with this tab's corrected slices in place, and how many slices were corrected."""
    out = np.array(mask, dtype=np.uint8, copy=True)
    prefix = patient_histories(token)
    edited = edited_masks(prefix)
    for k, m in edited.items():
        idx = int(k[len(prefix):])
        if 0 <= idx < len(out) and m.shape == out.shape[1:]:
            out[idx] = m
    return out, len(edited)


def render_patient_correction(volume: Volume, result: VolumePrediction, idx: int, channel: str, token: object,
                              weights_version: str, clinical: Clinical | None) -> None:
    """The editor under the whole-patient scroller's slice, with the patient's corrected volume and NIfTI."""
    truth = None if volume.truth is None else volume.truth[idx].astype(np.uint8)
    target = SliceTarget(volume.slices[idx], result.mask[idx], truth, f"{volume.name} slice {idx + 1}", weights_version,
                         "whole patient", volume.name, idx + 1, clinical)

    def summary(current: np.ndarray) -> None:
        corrected, n = corrected_volume(result.mask, token)
        corrected[idx] = current
        voxels = int(corrected.sum())
        model_voxels = int(result.mask.sum())
        if volume.voxel_ml is not None:
            st.metric("Tumour volume (corrected)", f"{voxels * volume.voxel_ml:.2f} mL",
                      f"{(voxels - model_voxels) * volume.voxel_ml:+.2f} mL vs the model's "
                      f"{model_voxels * volume.voxel_ml:.2f} mL", delta_color="off", delta_arrow="off")
        else:
            st.metric("Tumour volume (corrected)", f"{voxels} voxels", f"{voxels - model_voxels:+d} vs the model's "
                      f"{model_voxels} (no voxel spacing, so no mL)", delta_color="off", delta_arrow="off")
        if volume.truth is not None:
            st.caption(f"Per-volume Dice vs the uploaded masks: corrected {dice(corrected, volume.truth):.3f}, "
                       f"the model's {dice(result.mask, volume.truth):.3f}.")
        try:
            data = mask_nifti(volume, replace(result, mask=corrected))
        except (VolumeError, ValueError) as exc:
            st.warning(f"The corrected NIfTI is not available: {exc}")
            return
        st.download_button("Download corrected mask (NIfTI)", data, file_name=f"{safe_name(volume.name)}_corrected_mask.nii.gz",
                           mime="application/gzip", key="patient_correct_dl", on_click="ignore",
                           help=f"The whole patient on the input's own grid, with this tab's corrections on "
                                f"{n} slice(s).")

    render_editor(target, key="patient_correct", history=f"{patient_histories(token)}{idx}", channel=channel,
                  extras=summary)
