"""The whole-patient input checks between reading and predicting: what was not used, the voxel size a Kaggle
upload lacks, and whether the head lies the way the training slices do (with the turn the user may pick).

Each check is one library call (``readers.PatientSource.unused``, ``readers.kaggle.with_voxel_size``,
``patient.orientation.check_lie`` / ``reorient``); this module only draws the widgets and keeps their values
under ``patient_*`` keys tied to the input's token, so a new upload starts from a clean slate.
"""

from __future__ import annotations

import streamlit as st

from lggdemo.data.directions import EdgeLetters
from lggdemo.patient.orientation import (
    TURN_CHOICES,
    Lie,
    check_lie,
    edge_letters,
    reorient,
    shown_axcodes,
    slice_label,
    turn_name,
)
from lggdemo.patient.readers import PatientSource
from lggdemo.patient.readers.kaggle import with_voxel_size
from lggdemo.patient.volume import Volume, VolumeError

__all__ = ["render_input_checks", "render_unused", "slice_label", "letters_for", "axcodes_for", "volume_state"]


def letters_for(volume: Volume) -> EdgeLetters:
    """The orientation letters of the volume's displayed slices, from its grid."""
    return edge_letters(volume.grid)


def axcodes_for(volume: Volume) -> tuple[str, str, str]:
    """Where the shown slices' axes point (the 3D view's axes)."""
    return shown_axcodes(volume.grid)


def volume_state(volume: Volume) -> tuple[object, ...]:
    """What the checks may change in a volume: part of the prediction's cache key."""
    return (volume.grid.turn, volume.spacing)


def render_unused(source: PatientSource | None, assignment: dict[str, int | None] | None) -> None:
    """One warning naming every uploaded file (or series) that is not used, and why."""
    if source is None:
        return
    unused = source.unused(assignment)
    if not unused:
        return
    lines = "\n".join(f"- **{u.name}**: {u.reason}" for u in unused[:30])
    more = f"\n- … and {len(unused) - 30} more" if len(unused) > 30 else ""
    st.warning(f"{len(unused)} uploaded file(s) not used for this patient:\n{lines}{more}",
               icon=":material/block:")


def _voxel_size(volume: Volume, token: object) -> Volume:
    """The Kaggle layout's missing voxel size, typed by the user (both fields, or none: volumes in voxels)."""
    if volume.provenance.kind != "kaggle":
        return volume
    with st.expander("Voxel size (the Kaggle layout does not record it)", expanded=False):
        st.caption("Give both to have volumes in mL and a NIfTI mask with the true spacing; leave them empty to "
                   "get volumes in voxels. The kaggle_3m scans have about 0.5–1 mm pixels and 2.5–5 mm slices.")
        c1, c2 = st.columns(2)
        in_plane = c1.number_input("Pixel size in-plane (mm)", value=None, min_value=0.0, step=0.05, format="%.3f",
                                   key=f"patient_voxel_xy_{token}")
        thickness = c2.number_input("Slice spacing (mm)", value=None, min_value=0.0, step=0.5, format="%.2f",
                                    key=f"patient_voxel_z_{token}")
    if in_plane is None and thickness is None:
        return volume
    try:
        return with_voxel_size(volume, in_plane, thickness)
    except VolumeError as exc:
        st.error(str(exc))
        return volume


def _cached_lie(volume: Volume, state: object) -> Lie:
    held: dict[object, Lie] = st.session_state.setdefault("patient_lie", {})
    if state not in held:
        if len(held) > 16:
            held.clear()
        held[state] = check_lie(volume)
    return held[state]


def _lie(volume: Volume, token: object, state: object) -> Volume:
    """Say when the head lies on its side, and offer a turn (always available in an expander)."""
    lie = _cached_lie(volume, state)
    names = list(TURN_CHOICES)
    if lie.across:
        st.warning(lie.message, icon=":material/screen_rotation:")
        suggested = turn_name(lie.suggested)
        box = st.container(border=True)
        label = f"Turn the slices before predicting (suggested: {suggested})"
    else:
        box = st.expander("Orientation: turn the slices", expanded=False)
        label = "Turn the slices before predicting (only if the head does not lie face up)"
    with box:
        choice = st.radio(label, names, index=0, horizontal=True, key=f"patient_turn_{token}",
                          help="The models were trained on slices with the face at the top and the patient's right "
                               "on the image's left. A turn changes what the models see and how the slices are "
                               "labelled; masks are still written onto the file's own voxels, so they open over it.")
    turned = reorient(volume, TURN_CHOICES[choice])
    if turned is not volume:
        after = _cached_lie(turned, (state, choice))
        if after.across:
            st.warning(f"After “{choice}” the head still lies across the image; try another turn.",
                       icon=":material/screen_rotation:")
        else:
            st.success(f"Turned ({choice}): the head's long axis now runs front to back, as in the training slices. "
                       "Check that the face is at the top.", icon=":material/screen_rotation:")
    return turned


def render_input_checks(source: PatientSource | None, assignment: dict[str, int | None] | None, volume: Volume,
                        token: object) -> Volume:
    """Unused files, the voxel size (Kaggle), the head's lie: the volume to predict, as the user left it."""
    render_unused(source, assignment)
    volume = _voxel_size(volume, token)
    return _lie(volume, token, (token, tuple(sorted((assignment or {}).items())), volume.spacing))
