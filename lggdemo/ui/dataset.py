"""The active dataset, shared by every page and read once per change rather than once per rerun.

Streamlit reruns the whole script on every click, and indexing the real set (thousands of TIFF
headers) takes seconds, so the index is cached by the folder *and* a cheap signature of the tree:
adding, removing or renaming a file changes a folder's mtime and so the key. The per-slice tables
are keyed by ``DatasetIndex.fingerprint()`` (every file's size and mtime), the same key as the
on-disk area cache, so a rewritten mask is measured again.

Usage from a page::

    choice, index = active_dataset()
    tables = dataset_tables(index)  # data.slice_table / data.patient_table, cached
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from lggdemo.data.arrays import patient_table, slice_table
from lggdemo.data.kaggle import DatasetError, DatasetIndex, scan_dataset
from lggdemo.data.sources import DatasetChoice, choose_dataset, path_input_allowed, path_input_explicitly_allowed
from lggdemo.data.synthetic import default_root, is_phantom
from lggdemo.ui.access import can_manage
from lggdemo.viz import eda

#: ``st.session_state`` key of the typed dataset path. A plain key, not the widget's: Streamlit forgets a
#: widget's state on any run that does not draw it, and the path must outlive page switches.
PATH_KEY = "lgg_dataset_path"
PATH_WIDGET_KEY = "lgg_dataset_path_input"

SOURCE_EXPLAINED = {
    "LGG_DATA_DIR": "set by the LGG_DATA_DIR environment variable",
    "sidebar": "typed in the sidebar",
    "project data/": "found in the project's data/kaggle_3m folder",
    "synthetic": "no real dataset found, so the built-in synthetic phantoms are shown",
}


@dataclass(frozen=True)
class DatasetTables:
    slices: pd.DataFrame  # data.slice_table: patient_id, slice, tumour_area_px
    patients: pd.DataFrame  # data.patient_table: clinical fields, slice counts, tumour volume


def path_box_allowed() -> bool:
    """Whether this session gets the sidebar's Dataset folder box, which opens folders on the server.

    Never with ``LGG_ALLOW_PATH_INPUT=0``. On a locked server (``LGG_OPERATOR_PASSWORD`` or ``LGG_READ_ONLY``)
    only the operator, after unlocking, unless the operator set ``LGG_ALLOW_PATH_INPUT=1`` explicitly: a visitor
    typing server paths is exactly what locking the server means to stop.
    """
    if not path_input_allowed():
        return False
    return path_input_explicitly_allowed() or can_manage()


def sidebar_path() -> str | None:
    """The path typed in the sidebar, or None when empty or when this session may not type one."""
    if not path_box_allowed():
        return None
    value = st.session_state.get(PATH_KEY) or ""
    return value.strip() or None


def tree_signature(root: Path) -> str:
    """Cheap change key: the root, data.csv and each patient folder's stat (one syscall per folder)."""
    parts = []
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        return f"unreadable:{exc.__class__.__name__}"
    for entry in entries:
        try:
            st_ = entry.stat()
        except OSError:
            continue
        parts.append(f"{entry.name}|{st_.st_size}|{st_.st_mtime_ns}")
    try:
        parts.append(f".|{root.stat().st_mtime_ns}")
    except OSError:
        pass
    return str(hash("\n".join(parts)))


@st.cache_resource(show_spinner="Indexing the dataset…", max_entries=4)
def _scan(root: str, synthetic: bool, signature: str) -> DatasetIndex:
    index = scan_dataset(root, synthetic=synthetic)
    if not synthetic and all(is_phantom(pid) for pid in index.patient_ids):
        index = replace(index, synthetic=True)  # phantoms reached through LGG_DATA_DIR or a typed path
    return index


@st.cache_resource(show_spinner=False, max_entries=8)
def _fingerprint(root: str, signature: str, _index: DatasetIndex) -> str:
    return _index.fingerprint()


@st.cache_data(show_spinner="Measuring tumour areas…", max_entries=4)
def _tables(root: str, fingerprint: str, _index: DatasetIndex) -> DatasetTables:
    return DatasetTables(slices=slice_table(_index), patients=patient_table(_index))


@st.cache_resource(show_spinner=False, max_entries=4)
def _figures(root: str, fingerprint: str, _index: DatasetIndex) -> dict[str, go.Figure]:
    tables = _tables(root, fingerprint, _index)
    return eda.figures(_index, tables.slices, tables.patients)


def load_index(choice: DatasetChoice) -> DatasetIndex:
    """The cached index of ``choice``; raises DatasetError when the folder holds no usable patient."""
    return _scan(str(choice.root), choice.synthetic, tree_signature(choice.root))


def active_dataset() -> tuple[DatasetChoice, DatasetIndex]:
    """The dataset every page shows. Never fails on a bad folder: it falls back to the phantoms and says why."""
    choice = choose_dataset(sidebar_path())
    try:
        index = load_index(choice)
        return (replace(choice, synthetic=True) if index.synthetic else choice), index
    except DatasetError as exc:
        if choice.synthetic:
            raise
        why = f"{choice.root} could not be used: {exc}"
        fallback = DatasetChoice(default_root(), "synthetic", True, " ".join(filter(None, [choice.warning, why])))
        return fallback, load_index(fallback)


def dataset_fingerprint(index: DatasetIndex) -> str:
    """``index.fingerprint()`` (thousands of stats on the real set) computed once per tree signature.

    A file overwritten in place keeps its folder's mtime, so such an edit needs the sidebar's Rescan.
    """
    return _fingerprint(str(index.root), tree_signature(index.root), index)


def dataset_tables(index: DatasetIndex) -> DatasetTables:
    """Per-slice tumour areas and per-patient rows, cached by the dataset's fingerprint."""
    return _tables(str(index.root), dataset_fingerprint(index), index)


def dataset_figures(index: DatasetIndex) -> dict[str, go.Figure]:
    """The EDA charts (``lggdemo.viz.eda.figures``), built once per dataset version and shared read-only."""
    return _figures(str(index.root), dataset_fingerprint(index), index)


def rescan() -> None:
    """Forget every cached index and table (after files were changed in place)."""
    for cached in (_scan, _fingerprint, _tables, _figures):
        cached.clear()


def source_line(choice: DatasetChoice, with_path: bool = True) -> str:
    """Why this dataset, and where it is; not for phantoms, whose folder is a cache nobody needs to see
    (and whose screenshots then stay the same from one test run to the next). ``with_path=False`` leaves the
    server folder out (the pages put it under "Details for the curious")."""
    where = "" if choice.synthetic or not with_path else f" — `{choice.root}`"
    return f"Source: {SOURCE_EXPLAINED.get(choice.source, choice.source)}{where}"


def describe_choice(choice: DatasetChoice, index: DatasetIndex) -> str:
    """One line for people: what is shown and how big it is."""
    kind = "Synthetic phantoms (not patient data)" if choice.synthetic else "Real MRI dataset"
    return f"{kind}: {len(index.patients)} patients, {index.n_slices} slices"
