"""The sidebar every page shows: which dataset and why, the device, retraining, the not-for-diagnosis notice.

It lives in the entry script, not in the pages, so the dataset path typed here survives page switches
and every page agrees on the same dataset.
"""

from __future__ import annotations

import os

import streamlit as st

from lggdemo import NOT_FOR_DIAGNOSIS
from lggdemo.data.kaggle import DatasetError
from lggdemo.data.sources import allowed_root
from lggdemo.ui.dataset import (
    PATH_KEY,
    PATH_WIDGET_KEY,
    active_dataset,
    describe_choice,
    path_box_allowed,
    rescan,
    source_line,
)
from lggdemo.ui.train.sidebar import render_training_sidebar


@st.cache_resource(show_spinner=False)
def device_text() -> str:
    """The device the models run on, as people read it (``auto``: CUDA, else MPS, else CPU)."""
    from lggdemo.device import choose_device, describe  # imports torch: keep it out of module import

    return describe(choose_device())


def _keep_path() -> None:
    st.session_state[PATH_KEY] = st.session_state.get(PATH_WIDGET_KEY, "")


def render_dataset_section() -> None:
    st.subheader("Dataset")
    if path_box_allowed():
        under = allowed_root()
        if PATH_WIDGET_KEY not in st.session_state:
            st.session_state[PATH_WIDGET_KEY] = st.session_state.get(PATH_KEY, "")
        st.text_input(
            "Dataset folder",
            key=PATH_WIDGET_KEY,
            on_change=_keep_path,
            placeholder="/path/to/kaggle_3m",
            help="A kaggle_3m folder (data.csv plus one folder per patient), or a folder that contains it."
            + (f" Only folders under {under} are allowed." if under else "")
            + (" LGG_DATA_DIR is set and takes precedence." if os.environ.get("LGG_DATA_DIR") else ""),
        )
    try:
        choice, index = active_dataset()
    except DatasetError as exc:  # only when even the built-in phantoms cannot be written (disk full, read-only)
        st.error(f"No dataset can be shown: {exc}")
        return
    st.markdown(f"**{describe_choice(choice, index)}**")
    st.caption(source_line(choice))
    if choice.warning:
        st.warning(choice.warning)
    if choice.synthetic:
        st.info(
            "Showing generated phantom scans, not patient data. To use the real LGG set, set LGG_DATA_DIR, put it in "
            "data/kaggle_3m" + (" or type its folder above." if path_box_allowed() else ".")
        )
    if index.problems:
        st.warning(f"{len(index.problems)} problem(s) while reading the dataset; see Dataset EDA for the list.")
    if st.button("Rescan dataset", help="Read the folder again after files were changed."):
        rescan()
        st.rerun()


def render_sidebar() -> None:
    with st.sidebar:
        render_dataset_section()
        st.caption(f"Device: {device_text()}")
        st.divider()
        render_training_sidebar()
        st.divider()
        st.caption(f":material/warning: {NOT_FOR_DIAGNOSIS}")
