"""What both Predict modes share: the cached models, the active dataset and card, the clinical fields, the grade.

Below the two modes (``slices``, ``patient``) and the teaching layer, so each imports it and none imports
another.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import streamlit as st
import torch

from lggdemo.data.kaggle import Clinical, DatasetIndex
from lggdemo.data.sources import DatasetChoice
from lggdemo.device import DeviceError, choose_device
from lggdemo.inference.grade import RAW_SCORE_LABEL, PatientGrade
from lggdemo.inference.predictor import Predictor, safe_clinical
from lggdemo.models.card import card_metric
from lggdemo.models.engine import EngineChoice, EngineError, choose_engine
from lggdemo.models.weights import CARD_FILE, WeightsError, active_weights, is_complete, read_card
from lggdemo.ui.dataset import active_dataset

HOW_TO_GET_WEIGHTS = (
    "Train them with `python -m lggdemo.train` (writes the bundled `weights/` folder), or start a training run "
    "from the sidebar's retraining panel and activate it when it finishes."
)


SEX_OPTIONS = ("unknown", "female", "male")


@dataclass(frozen=True)
class LoadedModels:
    predictor: Predictor | None
    message: str | None  # why there is no predictor, for the page


@st.cache_resource(max_entries=2, show_spinner="Loading the models…")
def load_predictor(version: str, directory: str, device: str, engine: EngineChoice | None = None) -> Predictor:
    """One Predictor per weights version and engine; two kept: the active one and the one the lesson's Compare
    shows next to it (older ones are dropped when a run is activated). ``engine`` (resolved by
    :func:`engine_choice`) is part of the key, so a fallback to PyTorch is never served from an ONNX entry."""
    if not is_complete(Path(directory)):
        raise WeightsError(f"{directory} is incomplete: the model card does not list both models with matching "
                           "SHA-256 hashes (a run stopped while saving, or files were replaced).")
    return Predictor.from_directory(Path(directory), torch.device(device), engine=engine)


def engine_choice(device: torch.device) -> EngineChoice:
    """``$LGG_ENGINE`` (default auto) resolved for this device: ONNX Runtime on a CPU when it is installed."""
    return choose_engine(None, device)


def load_models() -> LoadedModels:
    """The active weights on the best device, or a message saying what is missing and how to get it."""
    active = active_weights()
    if not (active.directory / CARD_FILE).is_file():
        return LoadedModels(None, f"No trained weights are installed (nothing in `{active.directory}`). "
                                  + HOW_TO_GET_WEIGHTS)
    try:
        device = choose_device("auto")
        predictor = load_predictor(active.version, str(active.directory), str(device), engine_choice(device))
        return LoadedModels(predictor, None)
    except (WeightsError, DeviceError, EngineError) as exc:
        return LoadedModels(None, f"The weights in `{active.directory}` cannot be used: {exc} " + HOW_TO_GET_WEIGHTS)


def active_index() -> tuple[DatasetChoice, DatasetIndex]:
    """The dataset the sidebar chose, scanned (cached by ``ui.dataset``)."""
    return active_dataset()


def active_card() -> dict[str, Any]:
    """The active weights' card (whose split says which patients the models saw); empty when unreadable."""
    try:
        return read_card(active_weights().directory)
    except WeightsError:
        return {}


def current_clinical() -> tuple[Clinical | None, list[str]]:
    """The submitted fields, validated; messages for anything missing or refused."""
    age = st.session_state.get("predict_age")
    sex = st.session_state.get("predict_sex", "unknown")
    typed = Clinical(age=None if age is None else float(age), sex=None if sex == "unknown" else sex)
    clinical, error = safe_clinical(typed)
    messages = []
    if error:
        messages.append(f"{error} The grade is not computed until this is fixed; the masks still are.")
    else:
        if age is None:
            messages.append("Age not given: the grade model treats it as unknown (it learnt an age-missing indicator), "
                            "and the age-only baseline does not apply.")
        if sex == "unknown":
            messages.append("Sex not given: treated as unknown.")
    return clinical, messages


def grade_figure(p_g3: float) -> go.Figure:
    fig = go.Figure(go.Bar(
        x=[1 - p_g3, p_g3], y=["Grade II (G2)", "Grade III (G3)"], orientation="h",
        marker_color=["#4C78A8", "#E45756"], text=[f"{1 - p_g3:.0%}", f"{p_g3:.0%}"], textposition="auto",
    ))
    fig.update_layout(height=200, margin=dict(l=10, r=10, t=30, b=10), xaxis=dict(range=[0, 1], title="probability"),
                      title="Model's probability of each grade (patient level)")
    return fig


def render_withheld_grade(sentence: str, raw: float) -> None:
    """The card withholds the model's P(G3) (``gradeinfo``): one plain sentence with the cohort's base rate
    instead of the bar, the raw number only inside a collapsed expander."""
    st.info(sentence)
    with st.expander(RAW_SCORE_LABEL, expanded=False):
        st.markdown(f"Model output for this patient: **{raw:.2f}**. It is the sigmoid of the grade "
                    "network's patient-level logit, not a probability you can take at its word: on new patients it "
                    "ranked grade III no better than chance.")


def render_grade_value(grade: PatientGrade, chart_key: str) -> None:
    """The patient's grade as both Predict modes show it: the bar, or the sentence that withholds it; then the note."""
    if grade.raw_score is None:
        return
    if grade.withheld or grade.shown_p_g3 is None:
        render_withheld_grade(grade.withheld or "", grade.raw_score)
    else:
        st.plotly_chart(grade_figure(grade.shown_p_g3), key=chart_key)
    if grade.note:
        st.info(grade.note)


def render_mask_quality(predictor: Predictor) -> None:
    """What a clinician should expect of the mask, from the card: its own validation patients and, when
    recorded, the recipe's cross-validated estimate over every patient."""
    cv_label = "cross-validated over every patient"
    seg = predictor.card.get("segmentation") or {}
    if isinstance(seg, dict) and (seg.get("cross_validation") or {}).get("postprocess") not in (None, seg.get("postprocess")):
        cv_label += " (scored before the 3D rule)"
    found = [(label, card_metric(predictor.card, "segmentation", "per_volume_dice_mean", cross_validated=cv))
             for label, cv in (("validation patients", False), (cv_label, True))]
    parts = [f"{label}: **{m.text()}**" for label, m in found if m]
    if parts:
        st.caption("**How good are these masks?** Per-volume Dice against expert masks — " + "; ".join(parts) + ".")
