"""The Train page's list of saved corrections: what each one changed, a look at it, and deleting it.

The corrections live on disk (:mod:`lggdemo.corrections.store`), shared by every tab of the server; the list
is read afresh on each view. A correction whose image has gone is listed with the reason, not hidden and
not a crash. Deleting is operator-only on a locked server (:mod:`lggdemo.access`), like every other change
of shared state; viewing is for everyone.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from lggdemo.corrections import (
    Correction,
    CorrectionError,
    corrections_dir,
    delete_correction,
    list_corrections,
    load_correction,
)
from lggdemo.ui.access import can_manage, locked_hint
from lggdemo.ui.train.page import flash
from lggdemo.viz.orientation import with_letters
from lggdemo.viz.overlay import channel_rgb, overlay_mask

NONE_YET = ("No corrections yet. On **Predict**, open **Correct this mask** under a slice, fix the mask and press "
            "**Save as a training example**; it is listed here, and the sidebar's retraining can fine-tune the "
            "active weights with it.")


def _number(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def corrections_table(items: list[Correction]) -> pd.DataFrame:
    """One row per correction: where it came from, what the edit changed, whether it can be used."""
    rows = []
    for c in items:
        p = c.provenance
        rows.append({
            "correction": c.id,
            "patient": c.patient_id,
            "source slice": "—" if p is None or p.source_slice is None else str(p.source_slice),
            "saved (UTC)": "—" if p is None else p.saved_at.replace("T", " ").replace("+00:00", ""),
            "view": "—" if p is None else p.mode,
            "weights": "—" if p is None else p.weights_version,
            "model px": None if p is None else p.original_area_px,
            "corrected px": None if p is None else p.corrected_area_px,
            "Dice model": _number(None if p is None else p.dice_original),
            "Dice corrected": _number(None if p is None else p.dice_corrected),
            "status": "usable" if c.usable else f"not usable: {c.problem}",
        })  # fmt: skip
    return pd.DataFrame(rows)


def _show(c: Correction) -> None:
    try:
        image, mask = load_correction(c)
    except CorrectionError as exc:
        st.warning(str(exc))
        return
    base = channel_rgb(image, 1)
    left, right = st.columns([1, 1])
    left.image(with_letters(overlay_mask(base, mask, alpha=0.45)), caption=f"{c.id}: the corrected mask on FLAIR",
               width="stretch")
    with right:
        p = c.provenance
        if p is None:
            st.caption(c.note or "No provenance file.")
            return
        st.markdown(f"**Source:** `{p.source}` ({p.mode} view) · saved {p.saved_at} · weights `{p.weights_version}`")
        st.markdown(f"**Area:** the model's {p.original_area_px} px → corrected {p.corrected_area_px} px "
                    f"({p.edits} edit(s))")
        if p.dice_corrected is not None:
            st.markdown(f"**Dice vs the ground truth:** the model's {p.dice_original:.3f} → corrected "
                        f"{p.dice_corrected:.3f} (truth {p.truth_area_px} px)")
        else:
            st.caption("There was no ground truth for this slice, so no Dice.")


def render_corrections() -> None:
    """The corrections section of the Train page."""
    st.subheader("Corrections")
    items = list_corrections()
    if not items:
        st.info(NONE_YET)
        return
    usable = sum(c.usable for c in items)
    st.caption(f"{usable} usable correction(s) in `{corrections_dir()}` (a kaggle_3m folder of their own: the "
               "dataset is never written to). Fine-tune the active weights with them from the sidebar's "
               "**Retrain models**.")
    for c in items:
        if not c.usable:
            st.warning(f"Correction {c.id} cannot be used: {c.problem}. Delete it, or put the file back.")
    st.dataframe(corrections_table(items), hide_index=True, width="stretch")
    ids = [c.id for c in items]
    picked = st.selectbox("Correction to view", ids, key="lgg_correction_pick")
    chosen = next(c for c in items if c.id == picked)
    _show(chosen)
    manage = can_manage()
    confirm = st.checkbox("Confirm deletion", key=f"lgg_correction_delete_ok_{chosen.id}", disabled=not manage)
    if st.button("Delete this correction", key="lgg_correction_delete", disabled=not (confirm and manage)) and manage:
        try:
            delete_correction(chosen.id)
        except CorrectionError as exc:
            st.error(str(exc))
        else:
            flash("success", f"Correction {chosen.id} was deleted.")
            st.rerun()
    if not manage:
        st.caption(locked_hint())
