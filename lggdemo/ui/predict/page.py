"""The Predict page: the models' caption, then one of its two modes (``slices`` or ``patient``)."""

from __future__ import annotations

import streamlit as st

from lggdemo import NOT_FOR_DIAGNOSIS
from lggdemo.ui.predict.patient import render_patient_mode
from lggdemo.ui.predict.shared import load_models
from lggdemo.ui.predict.slices import render_slices_mode

INPUT_MODES = ("Slices", "Whole patient")


def render_page() -> None:
    st.title("Predict")
    st.caption(NOT_FOR_DIAGNOSIS)
    mode = st.radio("Input", INPUT_MODES, horizontal=True, key="predict_input_mode",
                    help="Slices: one or more 2D slices. Whole patient: a Kaggle zip, NIfTI or DICOM volume, with a 3D "
                         "view, the tumour volume and NIfTI / DICOM SEG downloads.")
    models = load_models()
    if models.predictor is None:
        st.error(models.message)
        return
    predictor = models.predictor
    st.caption(f"Models: card `{predictor.version}` · running on {predictor.device_text} · "
               f"segmentation {predictor.seg_config.encoder} U-Net at {predictor.seg_config.image_size} px, "
               f"grade ResNet50 on {predictor.grade_config.image_size} px tumour crops")
    if predictor.engine_note:  # ONNX Runtime missing or its export failed: the page says why it runs on PyTorch
        st.info(predictor.engine_note)
    if mode == INPUT_MODES[1]:
        render_patient_mode(predictor)
    else:
        render_slices_mode(predictor)
