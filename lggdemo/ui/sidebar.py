"""The sidebar every page shows: dataset choice, device, the not-for-diagnosis notice."""

from __future__ import annotations

import streamlit as st

from lggdemo import NOT_FOR_DIAGNOSIS


def render_sidebar() -> None:
    with st.sidebar:
        st.caption(NOT_FOR_DIAGNOSIS)
