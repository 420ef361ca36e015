"""Entry point: page config, navigation and the sidebar shared by every page. No logic here."""

import streamlit as st

import lggdemo  # noqa: F401  (installs the torchvision guard before any page imports models)
from lggdemo.ui.sidebar import render_sidebar
from lggdemo.ui.style import page_styles

st.set_page_config(page_title="LGG MRI demo", page_icon=":material/neurology:", layout="wide")

navigation = st.navigation(
    [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("pages/eda.py", title="Dataset EDA", icon=":material/bar_chart:", url_path="eda"),
        st.Page("pages/predict.py", title="Predict", icon=":material/search:", url_path="predict"),
        st.Page("pages/compare.py", title="Compare two scans", icon=":material/compare:", url_path="compare"),
        st.Page("pages/train.py", title="Train", icon=":material/model_training:", url_path="train"),
    ]
)
page_styles()  # print stylesheet
render_sidebar()
navigation.run()
