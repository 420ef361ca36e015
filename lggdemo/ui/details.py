"""Internals a curious reader may want -- module paths, layer names, coordinates, server folders -- kept out of the
main text, in a collapsed expander, so the page speaks to a clinician or a student first."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

TITLE = "Details for the curious"


def for_the_curious(lines: Sequence[str], title: str = TITLE) -> None:
    """A collapsed expander listing ``lines`` (Markdown); nothing when there is nothing to say."""
    lines = [line for line in lines if line]
    if not lines:
        return
    with st.expander(title, expanded=False):
        st.markdown("\n".join(f"- {line}" for line in lines))
