"""Home: what the app is, what each page does, which dataset and device are in use."""

import streamlit as st

from lggdemo import NOT_FOR_DIAGNOSIS
from lggdemo.ui.dataset import active_dataset, describe_choice, source_line
from lggdemo.ui.details import for_the_curious
from lggdemo.ui.shell import require_shell
from lggdemo.ui.sidebar import device_text

require_shell()

st.title("Lower-grade glioma MRI: explore, segment, grade")
st.error(f"**Not for diagnosis.** {NOT_FOR_DIAGNOSIS}", icon=":material/warning:")
st.markdown(
    "Brain MRI slices of lower-grade glioma patients (the TCGA-LGG set published with Buda et al. 2019). "
    "Each slice has three channels — pre-contrast, FLAIR and post-contrast — and a hand-drawn mask of the "
    "FLAIR abnormality; `data.csv` gives each patient's WHO grade (II or III), sex and age. "
    "This app lets you look at that data, run two small models on it and retrain them."
)

st.subheader("Pages")
pages = [
    ("pages/eda.py", "Dataset EDA", ":material/bar_chart:",
     "Counts, grade, sex and age distributions, missing values, tumour sizes, a slice browser with the mask "
     "overlaid, and the clinical table."),
    ("pages/predict.py", "Predict", ":material/search:",
     "Two modes. **Slices** (2D images, or an example patient's slices): a tumour mask per slice (with its Dice "
     "when a true mask comes along), the grade model's estimate only where its model card shows it beats chance "
     "(otherwise a sentence saying so), Grad-CAM heatmaps of both models, the teaching lesson and a mask editor. "
     "**Whole patient** (a Kaggle-layout zip, NIfTI or a DICOM study): the 3D mask, tumour volume and measurements, "
     "a 3D view, the lesson and the editor on any slice, and NIfTI / DICOM SEG / PDF downloads; this mode has no "
     "Grad-CAM."),
    ("pages/train.py", "Train", ":material/model_training:",
     "Follow a retraining run started from the sidebar's **Retrain models**, compare runs and choose which "
     "weights the app uses."),
]
for path, label, icon, what in pages:
    left, right = st.columns([1, 4])
    left.page_link(path, label=label, icon=icon)
    right.markdown(what)

st.subheader("A guided tour in five steps")
st.caption("New here? Follow these steps in order; each link opens the page the step happens on.")
tour = [
    ("pages/eda.py", "Browse the data", ":material/bar_chart:",
     "Open the slice browser and page through a patient: three MRI channels and the expert's tumour mask."),
    ("pages/predict.py", "Try an example", ":material/search:",
     "Press **Try an example**: the models segment a few slices of one patient whose true mask is known."),
    ("pages/predict.py", "Read the errors", ":material/palette:",
     "Further down the page, **Errors in colour** paints true positives, false positives and false negatives, and "
     "**Dice explained** works the score out with those pixel counts."),
    ("pages/predict.py", "Move the threshold", ":material/tune:",
     "In **What the model saw**, step 4: move **Threshold** and watch the mask, its Dice and the curve of Dice and "
     "area against the threshold (the network does not run again); step 5 shows what post-processing removes."),
    ("pages/train.py", "Retrain and compare", ":material/model_training:",
     "Start a quick run from the sidebar's **Retrain models**, follow it here, then on Predict pick both weights "
     "under **Compare** to see what retraining changed."),
]
for number, (path, label, icon, what) in enumerate(tour, start=1):
    left, right = st.columns([1, 4])
    left.page_link(path, label=f"{number}. {label}", icon=icon)
    right.markdown(what)

st.subheader("Now in use")
choice, index = active_dataset()
col1, col2 = st.columns(2)
with col1:
    st.markdown(f"**Dataset:** {describe_choice(choice, index)}")
    st.caption(source_line(choice, with_path=False))
    if not choice.synthetic:
        for_the_curious([f"Dataset folder on the server: `{choice.root}`"])
    if choice.synthetic:
        st.info("The phantoms are generated shapes, not patient data: every page works on them, but numbers "
                "and models trained on them say nothing about real tumours. See the README for the real data.")
with col2:
    st.markdown(f"**Device:** {device_text()}")
    st.caption("CUDA when present, else Apple MPS, else the CPU.")
