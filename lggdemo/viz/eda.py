"""Figures and tables for the Dataset EDA page: pure functions of a DatasetIndex and its tables.

Nothing here reads a widget or a file, so the page stays a thin view, the figures can be tested
without a browser, and the app can cache them by the dataset's fingerprint. Patients whose
clinical fields are blank are kept and labelled ``unknown`` rather than dropped: hiding them would
make the cohort look cleaner than it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from lggdemo.data import codebook
from lggdemo.data.kaggle import LEAKY_COLUMNS, DatasetIndex, case_id

UNKNOWN = "unknown"
GRADE_ORDER = ["G2", "G3", UNKNOWN]
SEX_ORDER = ["female", "male", UNKNOWN]
RED, GREY = "#E45756", "#BAB0AC"
GRADE_COLOURS = {"G2": "#4C78A8", "G3": RED, UNKNOWN: "#9D9D9D"}
_LAYOUT = dict(margin=dict(l=10, r=10, t=50, b=10), height=330, template="plotly_white")


@dataclass(frozen=True)
class DatasetSummary:
    n_patients: int
    n_slices: int
    n_tumour_slices: int
    grade_counts: dict[str, int]
    n_without_clinical: int  # patients with images but no usable clinical row
    csv_rows_without_images: int  # data.csv rows with no patient folder (a subset of the cohort)
    n_problems: int  # scan problems plus masks that could not be decoded

    @property
    def tumour_fraction(self) -> float:
        return self.n_tumour_slices / self.n_slices if self.n_slices else 0.0


def _labelled(patients: pd.DataFrame) -> pd.DataFrame:
    out = patients.copy()
    out["grade"] = out["grade"].where(out["grade"].notna(), UNKNOWN)
    out["sex"] = out["sex"].where(out["sex"].notna(), UNKNOWN)
    return out


def summarize(index: DatasetIndex, slices: pd.DataFrame, patients: pd.DataFrame) -> DatasetSummary:
    """The headline numbers; ``slices``/``patients`` are ``data.slice_table``/``data.patient_table``."""
    readable = slices[slices.tumour_area_px >= 0]
    grades = _labelled(patients)["grade"].value_counts()
    present = {case_id(pid) for pid in index.patient_ids}
    no_clinical = int(patients[["grade", "sex", "age"]].isna().all(axis=1).sum())
    return DatasetSummary(
        n_patients=len(index.patients),
        n_slices=index.n_slices,
        n_tumour_slices=int((readable.tumour_area_px > 0).sum()),
        grade_counts={g: int(grades.get(g, 0)) for g in GRADE_ORDER},
        n_without_clinical=no_clinical,
        csv_rows_without_images=int(sum(1 for c in index.clinical.index if c not in present)),
        n_problems=len(index.problems) + int((slices.tumour_area_px < 0).sum()),
    )


def _count_bar(values: pd.Series, order: list[str], title: str, colours: dict[str, str] | None = None) -> go.Figure:
    counts = values.value_counts().reindex(order, fill_value=0)
    counts = counts[(counts > 0) | (counts.index != UNKNOWN)]
    fig = go.Figure(
        go.Bar(
            x=list(counts.index),
            y=counts.to_numpy(),
            text=counts.to_numpy(),
            textposition="auto",
            marker_color=[(colours or {}).get(k, "#72B7B2") for k in counts.index],
        )
    )
    fig.update_layout(title=title, yaxis_title="patients", **_LAYOUT)
    return fig


def grade_figure(patients: pd.DataFrame) -> go.Figure:
    """Patients per WHO grade (G2 / G3 / unknown)."""
    return _count_bar(_labelled(patients)["grade"], GRADE_ORDER, "Patients by grade", GRADE_COLOURS)


def sex_figure(patients: pd.DataFrame) -> go.Figure:
    return _count_bar(_labelled(patients)["sex"], SEX_ORDER, "Patients by sex")


def age_figure(patients: pd.DataFrame) -> go.Figure:
    """Age at diagnosis split by grade (histogram with a box per grade above it)."""
    data = _labelled(patients).dropna(subset=["age"])
    fig = px.histogram(
        data,
        x="age",
        color="grade",
        marginal="box",
        nbins=20,
        barmode="overlay",
        opacity=0.75,
        category_orders={"grade": GRADE_ORDER},
        color_discrete_map=GRADE_COLOURS,
        labels={"age": "age at diagnosis (years)"},
    )
    fig.update_layout(title=f"Age by grade ({len(data)} patients with an age)", yaxis_title="patients", **_LAYOUT)
    return fig


def missing_table(index: DatasetIndex) -> pd.DataFrame:
    """Missing values per clinical column over the patients that have images.

    A patient with images but no row in data.csv counts as missing in every column.
    """
    cases = [case_id(pid) for pid in index.patient_ids]
    raw_cols = [c for c in index.clinical.columns if c not in ("grade", "sex", "age")]
    # The decoded grade/sex/age repeat data.csv's coded columns; list the file's own columns when it has any.
    clinical = index.clinical.reindex(cases)[raw_cols or ["grade", "sex", "age"]]
    missing = clinical.isna().sum()
    n = max(len(cases), 1)
    return pd.DataFrame(
        {
            "column": missing.index,
            "missing": missing.to_numpy().astype(int),
            "missing_pct": (missing.to_numpy() / n * 100).round(1),
        }
    ).reset_index(drop=True)


def missing_figure(missing: pd.DataFrame) -> go.Figure:
    data = missing.sort_values("missing", ascending=True)
    fig = go.Figure(
        go.Bar(
            x=data["missing"],
            y=data["column"],
            orientation="h",
            text=[f"{m} ({p:g}%)" for m, p in zip(data["missing"], data["missing_pct"], strict=True)],
            textposition="auto",
            marker_color="#F58518",
        )
    )
    layout = {**_LAYOUT, "height": max(330, 22 * len(data) + 90), "margin": dict(l=10, r=10, t=70, b=10)}
    # Short and on the left: the chart toolbar Streamlit shows at the top right once covered the long title's end.
    fig.update_layout(title=dict(text="Missing values<br><sup>blank fields per clinical column</sup>", x=0.01,
                                 xanchor="left"),
                      xaxis_title="patients with a blank field", **layout)
    return fig


def slices_per_patient_figure(patients: pd.DataFrame) -> go.Figure:
    """Slices per patient, split into slices with and without tumour (stacked bars, sorted by total)."""
    data = _labelled(patients).fillna({"slices": 0, "tumour_slices": 0}).sort_values("slices", ascending=False)
    clean = (data["slices"] - data["tumour_slices"]).astype(int)
    fig = go.Figure(
        [
            go.Bar(x=data["patient_id"], y=data["tumour_slices"].astype(int), name="with tumour", marker_color=RED),
            go.Bar(x=data["patient_id"], y=clean, name="without tumour", marker_color=GREY),
        ]
    )
    fig.update_layout(title="Slices per patient", barmode="stack", yaxis_title="slices", **_LAYOUT)
    fig.update_layout(
        xaxis_showticklabels=len(data) <= 30,  # 76 folder names are unreadable; hover shows them
        legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"),
    )
    return fig


def tumour_area_figure(slices: pd.DataFrame) -> go.Figure:
    """Tumour area of each tumour-positive slice; slices without tumour are left out (they are all zero)."""
    positive = slices[slices.tumour_area_px > 0]
    n_read = int((slices.tumour_area_px >= 0).sum())
    frac = len(positive) / n_read if n_read else 0.0
    fig = go.Figure(go.Histogram(x=positive["tumour_area_px"], nbinsx=40, marker_color=RED))
    fig.update_layout(
        title=f"Tumour area per slice ({len(positive)} of {n_read} slices, {frac:.0%}, contain tumour)",
        xaxis_title="tumour area (pixels of 256×256)",
        yaxis_title="slices",
        **_LAYOUT,
    )
    return fig


def tumour_fraction_figure(patients: pd.DataFrame) -> go.Figure:
    """Per patient: the share of its slices that contain tumour, by grade."""
    data = _labelled(patients).dropna(subset=["slices"])
    data = data.assign(tumour_fraction=data["tumour_slices"] / data["slices"].where(data["slices"] > 0, np.nan))
    fig = px.box(
        data,
        x="grade",
        y="tumour_fraction",
        color="grade",
        points="all",
        hover_data=["patient_id"],
        category_orders={"grade": GRADE_ORDER},
        color_discrete_map=GRADE_COLOURS,
        labels={"tumour_fraction": "tumour-positive fraction"},
    )
    fig.update_layout(title="Tumour-positive fraction of each patient's slices", showlegend=False, **_LAYOUT)
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%")
    return fig


def clinical_table(index: DatasetIndex, patients: pd.DataFrame) -> pd.DataFrame:
    """One row per patient folder: decoded fields and counts first, then data.csv's columns, their codes decoded
    where the dataset documents them (:mod:`lggdemo.data.codebook`: "cluster N", "code N" where it does not).

    Leaky columns are kept (this is exploration, not a model input) and named in the page's caption.
    """
    table = patients.rename(columns={"tumour_volume_voxels": "tumour_voxels"}).copy()
    raw_cols = [c for c in index.clinical.columns if c not in ("grade", "sex", "age")]
    raw = index.clinical.reindex(table["case_id"])[raw_cols].reset_index(drop=True)
    for col in raw_cols:
        if codebook.is_coded(col):
            raw[col] = pd.Series(codebook.decode_column(col, raw[col]), dtype=object)
    out = pd.concat([table.reset_index(drop=True), raw], axis=1)
    for col in ("slices", "tumour_slices", "tumour_voxels"):
        if col in out:
            out[col] = out[col].astype("Int64")
    return out


def leaky_columns_present(index: DatasetIndex) -> list[str]:
    return [c for c in LEAKY_COLUMNS if c in index.clinical.columns]


def problems_table(index: DatasetIndex, slices: pd.DataFrame | None = None) -> pd.DataFrame:
    """What was skipped while reading the tree, one row per problem, for the page to list.

    The scan reads only file headers (fast); a mask truncated after its header is found when the
    areas are measured (``tumour_area_px == -1``), so those slices are listed here too.
    """
    rows = [{"where": p.where, "problem": p.message} for p in index.problems]
    if slices is not None:
        for r in slices[slices.tumour_area_px < 0].itertuples():
            rows.append({"where": f"{r.patient_id}/{r.patient_id}_{r.slice}_mask.tif",
                         "problem": "mask cannot be decoded; left out of the tumour statistics"})
    return pd.DataFrame(rows, columns=["where", "problem"])


def figures(index: DatasetIndex, slices: pd.DataFrame, patients: pd.DataFrame) -> dict[str, go.Figure]:
    """Every chart of the EDA page, by name: built together so the app can cache them as one."""
    return {
        "grade": grade_figure(patients),
        "sex": sex_figure(patients),
        "age": age_figure(patients),
        "missing": missing_figure(missing_table(index)),
        "tumour_fraction": tumour_fraction_figure(patients),
        "slices_per_patient": slices_per_patient_figure(patients),
        "tumour_area": tumour_area_figure(slices),
    }


def patient_slices(slices: pd.DataFrame, patient_id: str) -> pd.DataFrame:
    """That patient's slice numbers and tumour areas, in slice order (drives the slice browser)."""
    return slices[slices.patient_id == patient_id].sort_values("slice").reset_index(drop=True)
