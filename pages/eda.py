"""Dataset EDA: charts and tables over the active dataset, and a slice browser."""

import streamlit as st

from lggdemo.data.codebook import COLUMN_HELP
from lggdemo.data.directions import slice_label
from lggdemo.data.kaggle import DatasetError, load_image, load_mask
from lggdemo.ui.dataset import active_dataset, dataset_figures, dataset_tables, describe_choice, source_line
from lggdemo.ui.details import for_the_curious
from lggdemo.ui.shell import require_shell
from lggdemo.viz import eda
from lggdemo.viz.orientation import with_letters
from lggdemo.viz.overlay import CHANNELS, channel_rgb, overlay_mask

require_shell()

st.title("Dataset EDA")
choice, index = active_dataset()
tables = dataset_tables(index)
summary = eda.summarize(index, tables.slices, tables.patients)
st.caption(f"{describe_choice(choice, index)}. {source_line(choice, with_path=False)}")
if not choice.synthetic:
    for_the_curious([f"Dataset folder on the server: `{choice.root}`"])

if summary.n_problems:
    st.warning(f"{summary.n_problems} problem(s) while reading the dataset: these files were skipped; "
               "everything else below is complete.", icon=":material/warning:")
    st.dataframe(eda.problems_table(index, tables.slices), hide_index=True, width="stretch")

cols = st.columns(5)
cols[0].metric("Patients", summary.n_patients)
cols[1].metric("Slices", summary.n_slices)
cols[2].metric("Tumour slices", f"{summary.n_tumour_slices} ({summary.tumour_fraction:.0%})")
cols[3].metric("G2 / G3", f"{summary.grade_counts['G2']} / {summary.grade_counts['G3']}")
cols[4].metric("No clinical data", summary.n_without_clinical)

figures = dataset_figures(index)
st.subheader("Cohort")
c1, c2, c3 = st.columns([1, 1, 2])
c1.plotly_chart(figures["grade"], width="stretch")
c2.plotly_chart(figures["sex"], width="stretch")
c3.plotly_chart(figures["age"], width="stretch")
c1, c2 = st.columns(2)
c1.plotly_chart(figures["missing"], width="stretch")
c2.plotly_chart(figures["tumour_fraction"], width="stretch")

st.subheader("Slices and tumour")
c1, c2 = st.columns(2)
c1.plotly_chart(figures["slices_per_patient"], width="stretch")
c2.plotly_chart(figures["tumour_area"], width="stretch")

st.subheader("Slice browser")
c1, c2, c3 = st.columns([2, 2, 1])
patient = c1.selectbox("Patient", index.patient_ids, key="eda_patient")
slices = eda.patient_slices(tables.slices, patient)
numbers = slices["slice"].tolist()
start = int(slices.loc[slices.tumour_area_px.idxmax(), "slice"])  # open on the largest tumour cross-section
number = c2.select_slider(slice_label(), options=numbers, value=start, key=f"eda_slice_{patient}")
opacity = c3.slider("Mask opacity", 0.0, 1.0, 0.4, 0.05, key="eda_opacity")
record = next(r for r in index.patients[patient] if r.number == number)
try:
    image, mask = load_image(record), load_mask(record)
except DatasetError as exc:
    st.error(f"This slice cannot be shown: {exc}")
else:
    clin = index.clinical_for(patient)
    st.caption(
        f"{patient} · slice {number} of {len(numbers)} · tumour area {int(mask.sum())} px · "
        f"grade {clin.grade or 'unknown'} · {clin.sex or 'sex unknown'} · "
        f"age {int(clin.age) if clin.age is not None else 'unknown'}"
    )
    for col, (i, name) in zip(st.columns(3), enumerate(CHANNELS), strict=True):
        col.image(with_letters(overlay_mask(channel_rgb(image, i), mask, alpha=opacity)), caption=name, width="stretch")

st.subheader("Clinical table")
leaky = ", ".join(eda.leaky_columns_present(index))
st.caption("One row per patient folder; grade, sex and age first, then data.csv's columns, decoded where the "
           "dataset documents its codes (genomic clusters as \"cluster N\"; \"code N\" where no code book is "
           "published). Hover a column's name for what it holds. "
           + (f"Never model inputs: {leaky} (they leak the grade label)." if leaky else ""))
clinical = eda.clinical_table(index, tables.patients)
st.dataframe(clinical, hide_index=True, width="stretch",
             column_config={c: st.column_config.Column(help=COLUMN_HELP[c]) for c in clinical.columns if c in COLUMN_HELP})
