"""EDA figures and tables carry the dataset's numbers (checked against the tables they are drawn from)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from lggdemo.data.arrays import patient_table, slice_table
from lggdemo.data.kaggle import DatasetIndex, scan_dataset
from lggdemo.viz import eda

Tables = tuple[DatasetIndex, pd.DataFrame, pd.DataFrame]


@pytest.fixture(scope="module")
def tables(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Tables:
    index = scan_dataset(synthetic_root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LGG_CACHE_DIR", str(tmp_path_factory.mktemp("eda-cache")))
        return index, slice_table(index), patient_table(index)


def _bars(fig: go.Figure) -> dict[str, int]:
    (trace,) = fig.data
    return dict(zip(trace.x, (int(v) for v in trace.y), strict=True))


def test_summary_matches_tables(tables) -> None:
    index, slices, patients = tables
    s = eda.summarize(index, slices, patients)
    assert (s.n_patients, s.n_slices) == (len(index.patients), len(slices))
    assert s.n_tumour_slices == int((slices.tumour_area_px > 0).sum()) > 0
    assert 0 < s.tumour_fraction < 1
    assert sum(s.grade_counts.values()) == s.n_patients
    assert s.grade_counts["unknown"] == 1 == s.n_without_clinical  # the phantom with a blank data.csv row
    assert s.csv_rows_without_images == 0 and s.n_problems == 0


def test_grade_and_sex_bars_count_every_patient(tables) -> None:
    _, _, patients = tables
    grades = _bars(eda.grade_figure(patients))
    assert list(grades) == ["G2", "G3", "unknown"]
    expected = patients["grade"].fillna("unknown").value_counts()
    assert grades == {k: int(expected[k]) for k in grades}
    sexes = _bars(eda.sex_figure(patients))
    assert sum(sexes.values()) == len(patients) and sexes["unknown"] == 1


def test_unknown_bar_is_left_out_when_nobody_is_unknown(tables) -> None:
    _, _, patients = tables
    known = patients.dropna(subset=["grade"])
    assert "unknown" not in _bars(eda.grade_figure(known))


def test_age_figure_splits_ages_by_grade(tables) -> None:
    _, _, patients = tables
    fig = eda.age_figure(patients)
    hist = [t for t in fig.data if t.type == "histogram"]
    by_grade = {t.name: sorted(t.x) for t in hist}
    for grade, group in patients.dropna(subset=["age"]).groupby("grade"):
        assert by_grade[grade] == sorted(group["age"])
    assert any(t.type == "box" for t in fig.data)


def test_missing_table_counts_blank_fields_and_absent_rows(synthetic_copy: Path) -> None:
    csv = synthetic_copy / "data.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join(lines[:-2] + lines[-1:]) + "\n")  # drop the 11th patient's row entirely
    index = scan_dataset(synthetic_copy)
    missing = eda.missing_table(index).set_index("column")
    # Patient 12 has a blank row and patient 11 no row: both count as missing in every column.
    assert (missing["missing"] >= 2).all()
    assert missing.loc["neoplasm_histologic_grade", "missing"] == 2
    assert missing.loc["gender", "missing_pct"] == pytest.approx(2 / 12 * 100, abs=0.1)
    fig = eda.missing_figure(eda.missing_table(index))
    assert dict(zip(fig.data[0].y, fig.data[0].x, strict=True))["gender"] == 2


def test_slices_per_patient_stacks_tumour_and_clean_slices(tables) -> None:
    index, slices, patients = tables
    fig = eda.slices_per_patient_figure(patients)
    tumour, clean = fig.data
    assert sum(tumour.y) + sum(clean.y) == index.n_slices
    assert sum(tumour.y) == int((slices.tumour_area_px > 0).sum())
    totals = np.asarray(tumour.y) + np.asarray(clean.y)
    assert list(totals) == sorted(totals, reverse=True)


def test_tumour_area_histogram_holds_the_positive_slices(tables) -> None:
    _, slices, _ = tables
    fig = eda.tumour_area_figure(slices)
    positive = slices.loc[slices.tumour_area_px > 0, "tumour_area_px"]
    assert sorted(fig.data[0].x) == sorted(positive)
    assert f"{len(positive)} of {len(slices)} slices" in fig.layout.title.text


def test_tumour_fraction_is_per_patient_share(tables) -> None:
    _, slices, patients = tables
    fig = eda.tumour_fraction_figure(patients)
    values = sorted(v for t in fig.data for v in t.y)
    expected = sorted(slices.groupby("patient_id").tumour_area_px.apply(lambda a: float((a > 0).mean())))
    assert values == pytest.approx(expected)


def test_clinical_table_has_one_row_per_folder_and_raw_columns(tables) -> None:
    index, _, patients = tables
    table = eda.clinical_table(index, patients)
    assert list(table["patient_id"]) == index.patient_ids
    assert {"grade", "sex", "age", "slices", "neoplasm_histologic_grade", "gender"} <= set(table.columns)
    assert table["slices"].sum() == index.n_slices
    assert set(eda.leaky_columns_present(index)) == {"neoplasm_histologic_grade", "histological_type", "death01"}


def test_patient_slices_are_in_slice_order(tables) -> None:
    index, slices, _ = tables
    pid = index.patient_ids[3]
    got = eda.patient_slices(slices.sample(frac=1, random_state=0), pid)
    assert list(got["slice"]) == list(range(1, len(index.patients[pid]) + 1))


def test_problems_table_lists_scan_problems_and_undecodable_masks(synthetic_copy: Path) -> None:
    a, b = sorted(p.name for p in synthetic_copy.iterdir() if p.is_dir())[:2]
    (synthetic_copy / a / f"{a}_2_mask.tif").unlink()
    mask = synthetic_copy / b / f"{b}_4_mask.tif"
    mask.write_bytes(mask.read_bytes()[:3000])  # header intact, pixels cut off: passes the scan
    index = scan_dataset(synthetic_copy)
    slices = slice_table(index)
    table = eda.problems_table(index, slices)
    assert list(table["where"]) == [f"{a}/{a}_2.tif", f"{b}/{b}_4_mask.tif"]
    assert "image without mask" in table["problem"][0] and "cannot be decoded" in table["problem"][1]
    assert eda.summarize(index, slices, patient_table(index)).n_problems == 2
    assert eda.problems_table(scan_dataset(synthetic_copy)).shape == (1, 2)


def test_figures_bundle_every_chart(tables) -> None:
    index, slices, patients = tables
    figs = eda.figures(index, slices, patients)
    assert set(figs) == {"grade", "sex", "age", "missing", "tumour_fraction", "slices_per_patient", "tumour_area"}
    assert all(isinstance(f, go.Figure) and f.data for f in figs.values())
    assert _bars(figs["grade"]) == _bars(eda.grade_figure(patients))
