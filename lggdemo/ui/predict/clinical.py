"""Age and sex belong to the input they were entered for: a new upload or example never inherits another's.

Both Predict modes show the same two fields (keys ``predict_age`` / ``predict_sex``), which once kept an example
patient's 43 years and sex for the next upload. Here every input has its own values:

- an example brings its dataset record (:func:`take_example`);
- a new upload starts from "not given", unless the fields were filled in while nothing was loaded, which is
  taken as filling them in for that upload (:func:`before_upload`, then :func:`adopt` once it is read);
- going back to an input (switching modes) brings its own values back (:func:`follow`).

Streamlit forbids changing a widget's value after it is drawn in a run, so every change happens either in a
callback (uploader, example button, form submit) or in :func:`follow` before the fields are drawn.

The report records the values used and where they came from (:func:`source`): ``reports`` turns that into
``age_given`` / ``sex_given`` and ``clinical_source``.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from lggdemo.data.kaggle import Clinical
from lggdemo.ui.predict.shared import SEX_OPTIONS

AGE_KEY, SEX_KEY = "predict_age", "predict_sex"
UNKNOWN_SEX = "unknown"
#: The input the fields' current values belong to: an input id, None (nothing loaded yet) or PENDING.
OWNER_KEY = "predict_clinical_owner"
#: Values of the inputs not shown right now, by input id.
STORE_KEY = "predict_clinical_store"
#: Where the current values came from (``SOURCES``), or None when nothing was given.
SOURCE_KEY = "predict_clinical_source"
PENDING = "(the upload being read)"
FROM_RECORD = "the example patient's dataset record"
TYPED = "typed on the page"
CLEARED_NOTE = ("Age and sex start empty for this upload: the values on the page belonged to the previous input. "
                "Enter this patient's, or leave them empty (unknown).")


@dataclass(frozen=True)
class Fields:
    """One input's clinical fields as the widgets hold them (sex as the radio's option)."""

    age: float | None = None
    sex: str = UNKNOWN_SEX
    source: str | None = None

    @property
    def given(self) -> bool:
        return self.age is not None or self.sex != UNKNOWN_SEX


def _shown() -> Fields:
    s = st.session_state
    return Fields(s.get(AGE_KEY), s.get(SEX_KEY, UNKNOWN_SEX) or UNKNOWN_SEX, s.get(SOURCE_KEY))


def _show(fields: Fields) -> None:
    st.session_state[AGE_KEY] = fields.age
    st.session_state[SEX_KEY] = fields.sex
    st.session_state[SOURCE_KEY] = fields.source if fields.given else None


def _park() -> None:
    """Keep the shown values under the input they belong to, so that input gets them back later."""
    owner = st.session_state.get(OWNER_KEY)
    if owner is not None and owner != PENDING:
        st.session_state.setdefault(STORE_KEY, {})[owner] = _shown()


def before_upload(uploader_key: str) -> None:
    """Uploader callback: files were added or replaced, so the fields are about to belong to a new input.

    Values entered while nothing was loaded are kept for it; values of a previous input are put away and the
    fields start empty. Removing every file changes nothing here (the page decides what stays shown).
    """
    if not st.session_state.get(uploader_key):
        return
    owner = st.session_state.get(OWNER_KEY)
    if owner is None:
        st.session_state[OWNER_KEY] = PENDING
        return
    _park()
    had_values = _shown().given
    _show(Fields())
    st.session_state[OWNER_KEY] = PENDING
    st.session_state["predict_clinical_note"] = CLEARED_NOTE if had_values else None


def take_example(clinical: Clinical, input_id: str) -> None:
    """Example callback (after the example became the input ``input_id``): its dataset record fills the fields."""
    _park()
    _show(Fields(clinical.age, clinical.sex or UNKNOWN_SEX, FROM_RECORD))
    st.session_state[OWNER_KEY] = input_id
    st.session_state["predict_clinical_note"] = None


def adopt(input_id: str | None) -> None:
    """An uploaded input was read and became ``input_id``: the fields (emptied or pre-filled) are now its own."""
    if st.session_state.get(OWNER_KEY) in (None, PENDING):
        st.session_state[OWNER_KEY] = input_id


def follow(input_id: str | None) -> None:
    """Before the fields are drawn: show ``input_id``'s own values (the mode's current input; None for none).

    Switching modes switches inputs: each mode's input gets back the values entered for it, never the other's.
    """
    owner = st.session_state.get(OWNER_KEY)
    if owner == input_id or owner == PENDING:
        return
    if owner is None:  # filled in while nothing was loaded: they are this input's
        st.session_state[OWNER_KEY] = input_id
        return
    _park()
    _show(st.session_state.get(STORE_KEY, {}).get(input_id, Fields()) if input_id is not None else Fields())
    st.session_state[OWNER_KEY] = input_id


def submitted() -> None:
    """Form-submit callback: the values on the page were entered (or confirmed) for the current input."""
    st.session_state[SOURCE_KEY] = TYPED if _shown().given else None
    st.session_state["predict_clinical_note"] = None


def source() -> str | None:
    """Where the current values came from (``FROM_RECORD``, ``TYPED``), or None when none was given."""
    return st.session_state.get(SOURCE_KEY) if _shown().given else None


def note() -> str | None:
    """A one-off sentence when an upload emptied fields that held the previous input's values."""
    return st.session_state.get("predict_clinical_note")



def render_fields(form_key: str, input_id: str | None) -> None:
    """The clinical form of either mode, showing ``input_id``'s own values (see :func:`follow`)."""
    follow(input_id)
    with st.form(form_key):
        st.number_input("Age at diagnosis (years; leave empty if unknown)", value=None, step=1.0, format="%.0f",
                        key=AGE_KEY)
        st.radio("Sex", SEX_OPTIONS, horizontal=True, key=SEX_KEY)
        st.form_submit_button("Apply to the grade", on_click=submitted)
    st.caption("The grade model uses age and sex only; grade, histology and survival are never inputs. The fields "
               "belong to the current input: a new upload or example starts with its own.")
    if note():
        st.info(note())
