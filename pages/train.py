"""Train: follow a retraining run live, compare past runs, choose which weights the app uses.

Runs are started from the sidebar's **Retrain models** (on every page); this page shows the rest.
"""

import streamlit as st

from lggdemo.ui.shell import require_shell
from lggdemo.ui.train.corrections_list import render_corrections
from lggdemo.ui.train.page import render_train_page

require_shell()

st.title("Train")
st.markdown(
    "Retrain the segmentation and grade models on the active dataset from **Retrain models** in the sidebar. "
    "A run keeps going when you switch pages or close the tab; when it succeeds its weights become active. "
    "Cancelled or failed runs leave the active weights exactly as they were."
)
render_train_page()
st.divider()
render_corrections()
