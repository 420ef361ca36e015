"""Predict: upload slices (or load an example), see the mask, the grade probability and Grad-CAM."""

from lggdemo.ui.predict.page import render_page
from lggdemo.ui.shell import require_shell

require_shell()

render_page()
