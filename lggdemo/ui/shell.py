"""Keep every page inside the app shell (navigation, sidebar, wide layout).

Streamlit still carries its legacy ``pages/`` mode: a server whose entrypoint sits next to a
``pages/`` folder runs a request for ``/predict`` straight from ``pages/predict.py`` -- no
``streamlit_app.py``, no shared sidebar -- until some run calls ``st.navigation``. A first visitor
who opens a page's URL directly would stay in that bare mode. Every page calls
:func:`require_shell` first: in legacy mode it switches the mode off and reruns, and the rerun
goes through ``streamlit_app.py``, whose ``st.navigation`` picks the same page by its URL.
"""

from __future__ import annotations

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager


def require_shell() -> None:
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()
