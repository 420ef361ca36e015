"""data.csv's coded columns decoded only where the dataset documents them: grade and sex codes, the genomic
clusters as cluster numbers, the death indicator; every other code reads "code N"; blanks stay blank."""

from __future__ import annotations

import math

import pandas as pd

from lggdemo.data import codebook
from lggdemo.viz import eda


def test_documented_codes_and_nothing_else() -> None:
    assert codebook.decode_value("neoplasm_histologic_grade", 1.0) == "G2 (WHO grade II)"
    assert codebook.decode_value("gender", 2) == "male"
    assert codebook.decode_value("death01", 0.0) == "no death recorded"
    assert codebook.decode_value("RNASeqCluster", 3.0) == "cluster 3"
    assert codebook.decode_value("COCCluster", "2") == "cluster 2"
    assert codebook.decode_value("laterality", 3.0) == "code 3"  # no published code book: not guessed
    assert codebook.decode_value("race", 2) == "code 2"
    assert codebook.decode_value("gender", 7) == "code 7 (undocumented)"
    assert codebook.decode_value("RNASeqCluster", math.nan) is None and codebook.decode_value("race", None) is None
    assert not codebook.is_coded("age_at_initial_pathologic") and codebook.is_coded("tumor_location")


def test_every_data_csv_column_has_help(synthetic_root) -> None:  # noqa: ANN001
    header = pd.read_csv(synthetic_root / "data.csv", nrows=0).columns
    missing = [c for c in header if c != "Patient" and c not in codebook.COLUMN_HELP]
    assert not missing, missing


def test_the_eda_table_shows_decoded_values(synthetic_root) -> None:  # noqa: ANN001
    from lggdemo.data.arrays import patient_table
    from lggdemo.data.kaggle import scan_dataset

    index = scan_dataset(synthetic_root)
    table = eda.clinical_table(index, patient_table(index))
    values = {v for v in table["RNASeqCluster"].dropna()}
    assert values and all(v.startswith("cluster ") for v in values)
    assert {v for v in table["tumor_location"].dropna()} <= {f"code {n}" for n in range(10)}
    assert set(table["gender"].dropna()) <= {"female", "male"}
