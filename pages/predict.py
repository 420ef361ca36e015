"""Predict: upload slices (or load an example), see the mask, the grade probability and Grad-CAM."""

from lggdemo.ui.predict import render_page

render_page()
