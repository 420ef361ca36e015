"""The teaching layer on Predict: how the mask of one slice comes about, where it is wrong, where the model is unsure.

One entry point, :func:`render_slice_lesson`, takes arrays (a 256² slice, its truth or None, a Predictor)
so that any view of a slice -- the slice view today, a whole-patient view later -- can show the lesson.
All numbers come from :mod:`lggdemo.teach`; this module only draws.

The network does not run again for the lesson when the page passes the probability its prediction already
computed (``probability=``); otherwise it runs once per (slice, weights). Either way the view is kept in
``st.session_state["teach_cache"]``, so the Threshold slider, its Dice/area curve, the step tabs and the error
overlay redraw from cached arrays and never rerun it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from lggdemo import _fs, jobs
from lggdemo.data.imageio import SLICE_SIZE, encode_png, resize_mask
from lggdemo.device import DeviceError, choose_device
from lggdemo.inference.predictor import Predictor
from lggdemo.models import weights
from lggdemo.models.engine import EngineError
from lggdemo.teach import (
    ERROR_MARKDOWN_COLOURS,
    ERROR_NAMES,
    FN,
    FP,
    TP,
    MaskSteps,
    ModelView,
    TeachInputError,
    ThresholdCurve,
    Uncertainty,
    dice_breakdown,
    draw_errors,
    error_map,
    input_channel_images,
    masks_at,
    model_view,
    most_sensitive_slice,
    threshold_change_px,
    threshold_curve,
    tta_uncertainty,
    view_from_probability,
)
from lggdemo.ui.predict.shared import engine_choice, load_predictor
from lggdemo.ui.style import inline_image
from lggdemo.viz.orientation import with_letters  # lesson slices are in the kaggle_3m layout: its letters
from lggdemo.viz.overlay import CHANNELS, channel_rgb, overlay_heatmap, overlay_mask
from lggdemo.viz.threshold import threshold_figure

CACHE_KEY = "teach_cache"
#: Entries a session keeps: four per slice and weights (forward pass, uncertainty, two sets of encoded pictures),
#: each at most a few 256² float arrays or PNGs -- about 16 slices.
MAX_CACHED = 64
#: Colour of the pieces post-processing removes (the mask itself is MASK_COLOUR, red).
REMOVED_COLOUR = (200, 60, 255)
STEP_TITLES = ("1 · Three input channels", "2 · Normalised input", "3 · Probability map", "4 · Threshold",
               "5 · Post-processing", "6 · Final mask")
UNCERTAINTY_HOW_TO_READ = (
    "How to read it: red where the four mirrored copies of the slice get different tumour "
    "probabilities (the model is unsure there, usually along the tumour's edge), blue where they agree — "
    "agreement is not correctness, a model can be consistently wrong."
)
NEEDS_TRUTH = ("Errors and Dice need a ground-truth mask: upload one with the slice (named `<slice>_mask.*`) "
               "or press **Try an example**, which brings the expert's mask.")
T = TypeVar("T")


# --- cache ------------------------------------------------------------------------------------------


def _cached(kind: str, predictor: Predictor, image: np.ndarray, compute: Callable[[], T]) -> T:
    """``compute()`` once per (what, slice content, weights) and session; oldest entries dropped first."""
    key = (kind, hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest(), predictor.version, id(predictor))
    cache: dict[tuple[Any, ...], Any] = st.session_state.setdefault(CACHE_KEY, {})
    if key not in cache:
        cache[key] = compute()
        while len(cache) > MAX_CACHED:
            cache.pop(next(iter(cache)))
    return cache[key]


def cached_view(predictor: Predictor, image: np.ndarray) -> ModelView:
    return _cached("view", predictor, image,
                   lambda: model_view(predictor.engine, predictor.seg_config, image))


def lesson_view(predictor: Predictor, image: np.ndarray, probability: np.ndarray | None) -> ModelView:
    """The lesson's view: from the probability the prediction already computed when the page passes it (no forward
    pass), else one forward pass (cached like every other step)."""
    if probability is None:
        return cached_view(predictor, image)
    digest = hashlib.sha1(np.ascontiguousarray(probability).tobytes()).hexdigest()
    return _cached(f"view-from-probability:{digest}", predictor, image,
                   lambda: view_from_probability(predictor.seg_config, image, np.asarray(probability, np.float32)))


@dataclass(frozen=True)
class SliceChoice:
    """The input's other slices, so the lesson can offer the one where the threshold matters most.

    ``probabilities`` are the prediction's own (no forward pass); ``go_to(i)`` is a button callback that makes
    slice ``i`` (0-based) the inspected one; ``labels`` name the slices as the page does.
    """

    probabilities: Sequence[np.ndarray]
    labels: Sequence[str]
    current: int
    go_to: Callable[[int], None]


def slice_choice(probabilities: Sequence[np.ndarray], labels: Sequence[str], current: int, state_key: str,
                 values: Sequence[object]) -> SliceChoice | None:
    """A :class:`SliceChoice` whose button sets the page's slice widget (``state_key``) to ``values[i]``;
    None for a single slice (nothing to choose)."""
    if len(probabilities) < 2:
        return None

    def go_to(i: int) -> None:
        st.session_state[state_key] = values[i]

    return SliceChoice(probabilities, labels, current, go_to)


def cached_uncertainty(predictor: Predictor, image: np.ndarray) -> Uncertainty:
    return _cached("uncertainty", predictor, image,
                   lambda: tta_uncertainty(predictor.engine, predictor.seg_config, image))


@dataclass(frozen=True)
class StillPictures:
    """The lesson's pictures that no widget changes, encoded once per slice: a Threshold move re-encodes only
    the four mask pictures (PNG encoding is most of a redraw's cost)."""

    channels: tuple[bytes, ...]  # the three stored channels
    normalised: tuple[bytes, ...]  # the three channels the network receives
    probability: bytes  # the probability map over FLAIR


def _still_pictures(image: np.ndarray, base: np.ndarray, view: ModelView) -> StillPictures:
    gray = [np.repeat(p[..., None], 3, axis=2) for p in input_channel_images(view)]  # RGB: encode_png scales 0/1 masks
    return StillPictures(channels=tuple(encode_png(with_letters(channel_rgb(image, c))) for c in range(3)),
                         normalised=tuple(encode_png(with_letters(g)) for g in gray),
                         probability=encode_png(with_letters(overlay_heatmap(base, view.probability, alpha=0.6))))


# --- the pieces ---------------------------------------------------------------------------------------


def dice_line(steps: MaskSteps, truth: np.ndarray | None) -> str:
    """The live Dice under the Threshold slider (or the area when there is no truth)."""
    area = int(steps.final.sum())
    if truth is None:
        return f"Threshold {steps.threshold:.2f}: final mask **{area} px** (no ground truth, so no Dice)."
    d = dice_breakdown(steps.final, truth)
    return f"Dice at threshold {steps.threshold:.2f}: **{d.dice:.3f}** (final mask {area} px, truth {d.truth} px)"


def _render_errors(base: np.ndarray, steps: MaskSteps, truth: np.ndarray | None, shipped: float) -> None:
    st.markdown(f"#### Errors in colour (threshold {steps.threshold:.2f}; the model's own is {shipped:.2f})")
    if truth is None:
        st.info(NEEDS_TRUTH)
        return
    errors = error_map(steps.final, truth)
    d = dice_breakdown(steps.final, truth)
    with _picture(draw_errors(base, errors), "Predicted mask against the ground truth, on FLAIR"):
        what = {TP: "in both masks", FP: "predicted, not in the truth", FN: "in the truth, missed"}
        st.markdown("\n".join(
            f"- :{ERROR_MARKDOWN_COLOURS[k]}[■ **{ERROR_NAMES[k]}**]: {errors.counts.of(k)} px — {what[k]}"
            for k in (TP, FP, FN)))
        st.markdown("**Dice explained.** A = the predicted mask, B = the ground truth: "
                    f"|A∩B| = true positives = {d.intersection}, |A| = true + false positives = {d.predicted}, "
                    f"|B| = true positives + false negatives = {d.truth}.")
        st.code(d.dice_formula() + "\n" + d.iou_formula(), language=None, wrap_lines=True)
        st.caption("IoU (Jaccard) counts the same overlap against the union instead of the average size, so it is "
                   "never above the Dice: IoU = Dice / (2 − Dice). Dice punishes a miss on a small tumour hard: "
                   "a few pixels are a large share of it.")


def _picture(picture: np.ndarray | bytes, caption: str) -> DeltaGenerator:
    """A picture in the left two fifths; returns the right-hand column for what it shows.

    A picture computed this run (an array: it follows the Threshold) is drawn inline, so a fast slider cannot
    leave a broken image behind; an encoded still picture (bytes, the same every run) is served as usual.
    """
    left, right = st.columns([2, 3])
    if isinstance(picture, bytes):
        left.image(picture, caption=caption, width="stretch")
    else:
        with left:
            inline_image(with_letters(picture), caption)
    return right


def _curve(predictor: Predictor, image: np.ndarray, view: ModelView, truth: np.ndarray | None) -> ThresholdCurve:
    """The slice's Dice/area curve, once per (view, reference) and session: a slider move only redraws it."""
    h = hashlib.sha1(np.ascontiguousarray(view.logits).tobytes())
    if truth is not None:
        h.update(np.ascontiguousarray(truth, dtype=np.uint8).tobytes())
    return _cached(f"curve:{h.hexdigest()}", predictor, image, lambda: threshold_curve(view, truth))


def _render_threshold(view: ModelView, base: np.ndarray, truth: np.ndarray | None, shipped: float, key: str,
                      choice: SliceChoice | None, curve: ThresholdCurve) -> MaskSteps:
    """Step 4: the slider with its picture right under it, and the whole Dice/area curve beside them."""
    left, right = st.columns([2, 3], gap="medium")
    with left:
        threshold = st.slider("Threshold", 0.05, 0.95, float(np.clip(shipped, 0.05, 0.95)), 0.01, key=f"{key}_threshold",
                              help="Pixels whose tumour probability is above this become mask. Moving it reuses the "
                                   "stored probabilities: the network does not run again.")
        steps = masks_at(view, threshold)
        if truth is not None:
            inline_image(with_letters(draw_errors(base, error_map(steps.final, truth))),
                         f"Final mask at {steps.threshold:.2f} against the ground truth: green both, orange only "
                         "predicted, blue missed")
        else:
            inline_image(with_letters(overlay_mask(base, steps.final, alpha=0.5)),
                         f"Final mask at {steps.threshold:.2f}: {int(steps.final.sum())} px")
        st.markdown(dice_line(steps, truth))
    with right:
        st.plotly_chart(threshold_figure(curve.thresholds, curve.area_px, curve.dice, steps.threshold, shipped),
                        key=f"{key}_threshold_curve")
        low, high = curve.area_range
        best = curve.best
        st.caption(f"The model's own threshold is {shipped:.2f}. Lower it and the mask grows (fewer false negatives, "
                   f"more false positives); raise it and the mask shrinks: here from {high} px at 0.05 to {low} px at "
                   "0.95." + (f" The Dice peaks at {best[1]:.3f} at threshold {best[0]:.3f}." if best else ""))
        _offer_sensitive_slice(view, choice, key)
    return steps


def _offer_sensitive_slice(view: ModelView, choice: SliceChoice | None, key: str) -> None:
    """Where the threshold hardly changes this slice, a button to the input's slice where it changes most."""
    if choice is None or len(choice.probabilities) < 2:
        return
    best = most_sensitive_slice(choice.probabilities)
    if best is None or best == choice.current:
        return
    here, there = threshold_change_px(view.probability), threshold_change_px(choice.probabilities[best])
    if there <= here:
        return
    st.caption(f"On this slice {here} px change sides between thresholds 0.05 and 0.95; on {choice.labels[best]}, "
               f"{there} px: the threshold matters most there.")
    st.button(f"Go to {choice.labels[best]}", key=f"{key}_sensitive", on_click=choice.go_to, args=(best,))


def _render_steps(still: StillPictures, base: np.ndarray, view: ModelView, truth: np.ndarray | None, shipped: float,
                  key: str, curve: ThresholdCurve, choice: SliceChoice | None = None) -> MaskSteps:
    """The six steps as tabs (switching tabs costs no rerun); returns the masks at the chosen threshold."""
    st.markdown("#### What the model saw, step by step")
    tabs = st.tabs(list(STEP_TITLES))
    with tabs[3]:  # first, so every other step can use the chosen threshold
        steps = _render_threshold(view, base, truth, shipped, key, choice, curve)
    with tabs[0]:
        st.caption("The slice as stored: three MRI sequences of the same cut, one per colour channel.")
        for col, picture, name in zip(st.columns(3), still.channels, CHANNELS, strict=True):
            col.image(picture, caption=name, width="stretch")
    with tabs[1]:
        s = view.input_size
        st.caption(f"What the network receives: each channel z-scored over the head's pixels (mean 0, spread 1; "
                   f"shown from −3 black to +3 white), resized to the U-Net's input side of {s}×{s} px.")
        for col, picture, name in zip(st.columns(3), still.normalised, CHANNELS, strict=True):
            col.image(picture, caption=f"{name}, normalised, {s}×{s}", width="stretch")
    with tabs[2]:
        right = _picture(still.probability, "Tumour probability per pixel (blue 0 → red 1)")
        right.caption("The U-Net's output after a sigmoid, resized back to 256×256: one number per pixel, how sure "
                      f"the model is that it is tumour. Highest here: {float(view.probability.max()):.2f}.")
    with tabs[4]:
        drawn = overlay_mask(overlay_mask(base, steps.final, alpha=0.5), steps.removed, alpha=0.9,
                             colour=REMOVED_COLOUR)
        right = _picture(drawn, "Kept (red) and removed (violet) pieces")
        if steps.min_component_px <= 0:
            right.caption("This model keeps every piece of the thresholded mask: it has no post-processing rule.")
        else:
            right.caption(f"Rule: connected pieces smaller than {steps.min_component_px} px are removed — isolated "
                          "specks are mostly false positives. Removed here: "
                          f"**{steps.removed_components} piece(s), {int(steps.removed.sum())} px**.")
    with tabs[5]:
        with _picture(overlay_mask(base, steps.final, alpha=0.5), f"Final mask: {int(steps.final.sum())} px"):
            st.markdown(dice_line(steps, truth))
            st.caption(f"At the model's own threshold ({shipped:.2f}) this is the model's own mask: the same forward "
                       "pass and the same threshold and clean-up rule as the prediction above.")
    return steps


def _render_uncertainty(predictor: Predictor, image: np.ndarray, base: np.ndarray) -> None:
    st.markdown("#### Uncertainty")
    try:
        unc = cached_uncertainty(predictor, image)
    except (RuntimeError, ValueError) as exc:
        st.warning(f"The uncertainty map could not be computed: {exc}")
        return
    picture = _cached("uncertainty_png", predictor, image, lambda: encode_png(overlay_heatmap(base, unc.heatmap, alpha=0.5)))
    with _picture(picture, f"Spread of {unc.n_views} test-time-augmented predictions"):
        st.markdown(UNCERTAINTY_HOW_TO_READ)
        st.caption(f"Standard deviation of the tumour probability over the copies: largest {float(unc.std.max()):.2f} "
                   "(0.5 would be an even split). The U-Net has no dropout, so test-time augmentation stands in for "
                   "MC dropout.")


@dataclass(frozen=True)
class WeightsChoice:
    label: str
    directory: Path


def weight_choices(active: Path | None = None) -> list[WeightsChoice]:
    """The bundled weights, every completed retraining run and the weights in use (wherever they are), marked."""
    active = Path(active or weights.active_dir()).resolve()
    found: list[Path] = []
    if weights.is_complete(weights.BUNDLED_DIR):
        found.append(weights.BUNDLED_DIR)
    try:
        found += [run.path for run in jobs.list_runs() if not run.running and run.complete]
    except (jobs.JobError, OSError):
        pass  # an unreadable runs folder leaves the bundled weights to compare; the Train page says what is wrong
    if active not in {p.resolve() for p in found} and weights.is_complete(active):
        found.insert(0, active)  # a folder activated from outside the runs folder
    out = []
    for directory in found:
        try:
            version = str(weights.read_card(directory).get("version", "?"))
        except weights.WeightsError:
            continue
        if directory == weights.BUNDLED_DIR:
            name = "Bundled weights"
        elif directory.parent.resolve() == _fs.runs_dir().resolve():
            name = f"Run {directory.name}"
        else:
            name = f"Weights in {directory.name}"
        in_use = " (in use)" if directory.resolve() == active else ""
        out.append(WeightsChoice(f"{name} · {version}{in_use}", directory))
    return out


def _load(directory: Path) -> Predictor | str:
    """A folder's Predictor through the page's own cached loader (so the active one is not loaded twice)."""
    try:
        device = choose_device("auto")
        return load_predictor(weights.weights_version(directory), str(directory), str(device), engine_choice(device))
    except (weights.WeightsError, DeviceError, EngineError) as exc:
        return f"The weights in `{directory}` cannot be used: {exc}"


def _render_compare(image: np.ndarray, base: np.ndarray, truth: np.ndarray | None, key: str) -> None:
    st.markdown("#### Compare two models")
    choices = weight_choices()
    labels = [c.label for c in choices]
    if not choices:
        st.info("No complete weights to compare.")
        return
    in_use = next((i for i, c in enumerate(choices) if c.label.endswith("(in use)")), 0)
    c1, c2 = st.columns(2)
    first = c1.selectbox("Compare: first weights", labels, index=in_use, key=f"{key}_compare_a")
    second = c2.selectbox("Compare: second weights", labels, index=None, key=f"{key}_compare_b",
                          placeholder="pick weights to compare with")
    if len(choices) < 2:
        st.caption("Only one set of weights is installed: retrain from the sidebar (Retrain models), then compare "
                   "the run with the bundled weights here.")
    if first is None or second is None:
        st.caption("Pick two weights to see both masks of this slice side by side.")
        return
    masks = []
    for col, label in zip(st.columns(2), (first, second), strict=True):
        with col:
            loaded = _load(choices[labels.index(label)].directory)
            if isinstance(loaded, str):
                st.error(loaded)
                continue
            final = masks_at(cached_view(loaded, image)).final  # the model's own mask, at its own threshold
            masks.append(final)
            score = f" · Dice {dice_breakdown(final, truth).dice:.3f}" if truth is not None else ""
            st.image(with_letters(overlay_mask(base, final, alpha=0.5)), width="stretch",
                     caption=f"{label}: {int(final.sum())} px{score}")
    if len(masks) == 2:
        differ = int((masks[0].astype(bool) ^ masks[1].astype(bool)).sum())
        st.caption(f"The two masks differ on {differ} px of this slice."
                   + ("" if truth is not None else " Dice needs a ground-truth mask."))


# --- the entry point ------------------------------------------------------------------------------------


def render_slice_lesson(image_256: np.ndarray, truth: np.ndarray | None, predictor: Predictor, key: str, *,
                        probability: np.ndarray | None = None, choice: SliceChoice | None = None) -> None:
    """The whole lesson for one (256, 256, 3) uint8 slice; ``truth`` a 0/1 mask or None; ``key`` prefixes widgets.

    ``probability``: the (256, 256) tumour probability the page's prediction already computed for this slice; the
    lesson then reuses it instead of running the U-Net again. ``choice``: the input's other slices, for the
    threshold step's "where the threshold matters most" (see :class:`SliceChoice`).

    Drawn in a container keyed ``{key}_lesson`` (CSS class ``st-key-{key}_lesson``), so a browser test or
    a stylesheet can find the lesson as one block.
    """
    with st.container(key=f"{key}_lesson"):
        _render_lesson(image_256, truth, predictor, key, probability, choice)


def _render_lesson(image_256: np.ndarray, truth: np.ndarray | None, predictor: Predictor, key: str,
                   probability: np.ndarray | None = None, choice: SliceChoice | None = None) -> None:
    st.subheader("Teaching: how this mask comes about")
    st.caption("For teaching: every picture below is computed from this slice and these weights. Not a diagnosis.")
    image = np.asarray(image_256)
    if image.shape != (SLICE_SIZE, SLICE_SIZE, 3) or image.dtype != np.uint8:
        st.error(f"The lesson needs a {SLICE_SIZE}×{SLICE_SIZE} RGB slice; got {image.dtype} {image.shape}.")
        return
    if truth is not None:
        truth = resize_mask((np.asarray(truth) > 0).astype(np.uint8), SLICE_SIZE)
    try:
        view = lesson_view(predictor, image, probability)
        curve = _curve(predictor, image, view, truth)
    except (TeachInputError, RuntimeError, ValueError) as exc:
        st.error(f"The model could not be run for the lesson: {exc}")
        return
    base = channel_rgb(image, 1)
    shipped = float(predictor.seg_config.threshold)
    errors_box = st.container()
    still = _cached("pictures", predictor, image, lambda: _still_pictures(image, base, view))
    steps = _render_steps(still, base, view, truth, shipped, key, curve, choice)
    with errors_box:
        _render_errors(base, steps, truth, shipped)
    _render_uncertainty(predictor, image, base)
    _render_compare(image, base, truth, key)

