"""Compare before and after a fine-tune on corrections: on the corrected slices *and* on the validation patients.

The numbers are the trainer's (the card's ``segmentation.fine_tune``, see :mod:`lggdemo.train.finetune_report`):
both U-Nets scored on the same slices once, at the end of the run. A correction that fixes one slice but
hurts other patients must be visible, so every validation patient that got worse is named above the
tables, not left inside an average. The masks of the corrected slices are drawn on demand: two U-Nets run
on a handful of slices, each on the engine the app runs it on (``models.engine.load_engine``), through the same
forward pass as Predict (``models.forward.segment_slices``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from lggdemo import jobs
from lggdemo.corrections import CorrectionError, find_correction, load_correction
from lggdemo.device import DeviceError, choose_device
from lggdemo.models.engine import Engine, load_engine
from lggdemo.models.forward import segment_slices
from lggdemo.models.networks import SegConfig, seg_config_from_dict
from lggdemo.models.weights import SEG_FILE, WeightsError, read_config, weights_version
from lggdemo.viz.orientation import with_letters
from lggdemo.viz.overlay import channel_rgb, overlay_mask

#: The corrected slices drawn with both models' masks, at most.
MAX_PICTURES = 6


def fine_tune_of(card_data: dict[str, Any]) -> dict[str, Any] | None:
    """The card's fine-tune section, or None for a run that did not fine-tune on corrections."""
    seg = card_data.get("segmentation")
    ft = seg.get("fine_tune") if isinstance(seg, dict) else None
    return ft if isinstance(ft, dict) else None


def _delta(before: float | None, after: float | None) -> tuple[str, str | None]:
    if after is None:
        return "—", None
    return f"{after:.3f}", None if before is None else f"{after - before:+.3f} vs before ({before:.3f})"


@st.cache_resource(max_entries=2, show_spinner="Loading the U-Nets…")
def _unet(directory: str, version: str, device: str) -> tuple[Engine, SegConfig]:
    """The U-Net of a weights folder on the app's engine (ONNX Runtime on a CPU), keyed by the folder's version."""
    folder = Path(directory)
    return (load_engine(folder, choose_device(device), models=("segmentation",)),
            seg_config_from_dict(read_config(folder / SEG_FILE)))


def _masks(directory: str, images: np.ndarray) -> np.ndarray | str:
    try:
        device = choose_device("auto")
        engine, cfg = _unet(directory, weights_version(Path(directory)), str(device))
    except (WeightsError, DeviceError) as exc:
        return f"The U-Net in `{directory}` cannot be loaded: {exc}"
    return segment_slices(engine, cfg, images)[0]


def _pictures(ft: dict[str, Any], run: jobs.RunInfo) -> None:
    rows = (ft.get("corrected_slices") or {}).get("slices") or []
    found, images, missing = [], [], []
    for row in rows[:MAX_PICTURES]:
        try:
            image, mask = load_correction(find_correction(str(row["id"])))
        except CorrectionError:
            missing.append(str(row["id"]))
            continue
        found.append((row, mask))
        images.append(image)
    if missing:
        st.caption(f"Deleted or unreadable since the run, so not drawn: {', '.join(missing)}.")
    if not images:
        return
    stack = np.stack(images)
    before, after = _masks(str((ft.get("parent") or {}).get("folder")), stack), _masks(str(run.path), stack)
    for problem in (m for m in (before, after) if isinstance(m, str)):
        st.warning(problem)
    if isinstance(before, str) or isinstance(after, str):
        return
    for (row, fixed), image, b, a in zip(found, images, before, after):
        base = channel_rgb(image, 1)
        cols = st.columns(3)
        cols[0].image(with_letters(overlay_mask(base, b, alpha=0.5)), caption=f"Before: {int(b.sum())} px", width="stretch")
        cols[1].image(with_letters(overlay_mask(base, fixed, alpha=0.5, colour=(64, 200, 64))),
                      caption=f"{row['id']}: the correction, {int(fixed.sum())} px", width="stretch")
        cols[2].image(with_letters(overlay_mask(base, a, alpha=0.5)), caption=f"After: {int(a.sum())} px", width="stretch")


def _change_figure(rows: list[dict[str, Any]], worse_by: float) -> go.Figure:
    ordered = sorted(rows, key=lambda r: r["change"])
    fig = go.Figure(go.Bar(x=[r["change"] for r in ordered], y=[r["patient"] for r in ordered], orientation="h",
                           marker_color=["#E45756" if r["change"] < -worse_by else "#4C78A8" for r in ordered]))
    fig.update_layout(height=max(200, 24 * len(rows) + 80), margin=dict(l=10, r=10, t=30, b=30),
                      title="Change of each validation patient's per-volume Dice (after − before)",
                      xaxis_title="Dice change")
    return fig


def render_fine_tune_compare(run: jobs.RunInfo) -> None:
    """The before/after of a corrections fine-tune, from its card; nothing for other runs."""
    card = run.card()
    ft = fine_tune_of(card.to_dict()) if card is not None else None
    if ft is None:
        return
    st.markdown("#### Compare: before and after fine-tuning on corrections")
    if ft.get("error"):
        st.warning(f"No comparison: {ft['error']}")
        return
    parent = ft.get("parent") or {}
    slices, val = ft.get("corrected_slices") or {}, ft.get("validation") or {}
    patients = val.get("patients") or []
    st.caption(f"Before: the weights it started from (`{parent.get('version', '?')}`); after: this run. Both scored "
               "by the trainer on the same slices.")
    c1, c2 = st.columns(2)
    value, delta = _delta(slices.get("mean_before"), slices.get("mean_after"))
    c1.metric(f"Corrected slices ({len(slices.get('slices') or [])}): mean Dice vs the corrections", value, delta)
    value, delta = _delta(val.get("mean_before"), val.get("mean_after"))
    c2.metric(f"Validation patients ({len(patients)}): mean per-volume Dice vs the truth", value, delta)
    worse = list(val.get("worse") or [])
    by = float(val.get("worse_by") or 0.01)
    if worse:
        st.warning(f"Fine-tuning made {len(worse)} of {len(patients)} validation patient(s) worse (per-volume Dice down "
                   f"by more than {by:.2f}): {', '.join(worse)}. Fixing the corrected slices cost accuracy elsewhere; "
                   "keep the previous weights active unless the gain is worth it.")
    elif patients:
        st.success(f"No validation patient got worse by more than {by:.2f} per-volume Dice.")
    if val.get("left_out"):
        st.caption("Left out of the validation numbers, because a correction was cut from them (their slice was "
                   f"trained on): {', '.join(val['left_out'])}.")
    tab_slices, tab_patients = st.tabs(["On the corrected slices", "On the validation patients"])
    with tab_slices:
        table = pd.DataFrame([{"correction": r["id"], "patient": r["patient"], "source slice": r.get("source_slice"),
                               "Dice before": r["before"], "Dice after": r["after"],
                               "change": round(r["after"] - r["before"], 4)} for r in slices.get("slices") or []])
        st.dataframe(table, hide_index=True, width="stretch", key=f"lgg_ft_slices_{run.name}")
        st.caption(str(slices.get("scored_against", "")))
        if st.toggle("Show the corrected slices with both models' masks", key=f"lgg_ft_pictures_{run.name}"):
            _pictures(ft, run)
    with tab_patients:
        if not patients:
            st.info(val.get("note") or "No validation patient was left to score.")
        else:
            table = pd.DataFrame([{"patient": r["patient"], "Dice before": r["before"], "Dice after": r["after"],
                                   "change": r["change"], "worse": r["patient"] in worse} for r in patients])
            st.dataframe(table.sort_values("change"), hide_index=True, width="stretch", key=f"lgg_ft_patients_{run.name}")
            st.plotly_chart(_change_figure(patients, by), key=f"lgg_ft_chart_{run.name}")
            st.caption(str(val.get("scored_against", "")))
