"""What the coded columns of ``data.csv`` mean, as far as the dataset's sources document them -- and no further.

``data.csv`` (Buda et al., Computers in Biology and Medicine 2019; Mazurowski et al., J Neuro-Oncol 2017) stores
every clinical and genomic field as a number. What is documented:

- ``neoplasm_histologic_grade`` 1 = WHO grade II, 2 = grade III, and ``gender`` 1 = female, 2 = male: stated with
  the data (``../shared/lgg/README.md``, checked against TCGA's annotations) and already decoded by
  :func:`lggdemo.data.kaggle.decode_clinical`;
- the seven ``*Cluster`` columns: the patient's cluster (subtype) number in TCGA-LGG's integrative genomic
  analysis (Cancer Genome Atlas Research Network, NEJM 2015), one column per platform, as Buda et al. used them.
  The numbers are labels of groups, not amounts: cluster 3 is not "more" than cluster 1. The ranges in the data
  (1-4, 1-5, 1-4, 1-3, 1-4, 1-3, 1-3) match the number of clusters TCGA reports per platform;
- ``death01``: a death indicator, as its name says (1: a death was recorded; 0: none was);
- ``age_at_initial_pathologic``: years.

The rest (``histological_type``, ``tumor_tissue_site``, ``laterality``, ``tumor_location``, ``race``,
``ethnicity``) have no published code book with the dataset: guessing ("3 = right"?) would put words in the data's
mouth, so they read "code N". :func:`decode_value` is the one place these rules live; the EDA table uses it and
:data:`COLUMN_HELP` says per column what is known.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

#: Cluster columns: what was clustered (TCGA-LGG, NEJM 2015).
CLUSTER_PLATFORMS: dict[str, str] = {
    "RNASeqCluster": "mRNA expression (RNA-seq)",
    "MethylationCluster": "DNA methylation",
    "miRNACluster": "microRNA expression",
    "CNCluster": "DNA copy number",
    "RPPACluster": "protein expression (RPPA)",
    "OncosignCluster": "oncogenic signalling (OncoSign)",
    "COCCluster": "cluster of clusters (all platforms together)",
}
#: Codes documented with the dataset.
DOCUMENTED: dict[str, dict[int, str]] = {
    "neoplasm_histologic_grade": {1: "G2 (WHO grade II)", 2: "G3 (WHO grade III)"},
    "gender": {1: "female", 2: "male"},
    "death01": {0: "no death recorded", 1: "death recorded"},
}
#: Coded columns without a published code book: shown as "code N".
UNDOCUMENTED = ("histological_type", "tumor_tissue_site", "laterality", "tumor_location", "race", "ethnicity")
SOURCE = "data.csv of Buda et al. 2019 (TCGA-LGG)"

COLUMN_HELP: dict[str, str] = {
    **{col: f"TCGA-LGG {what} cluster the patient belongs to (Cancer Genome Atlas Research Network, NEJM 2015, as "
            f"used by Buda et al. 2019): a group label, not an amount." for col, what in CLUSTER_PLATFORMS.items()},
    "neoplasm_histologic_grade": "WHO grade as coded in data.csv (1 = II, 2 = III): the grade model's label, never "
                                 "an input.",
    "gender": "Sex as coded in data.csv (1 = female, 2 = male).",
    "death01": "Whether a death was recorded (an outcome: never a model input).",
    "age_at_initial_pathologic": "Age in years at the initial pathological diagnosis.",
    **{col: "Coded in data.csv; the dataset publishes no code book for this column, so its values are shown as "
            "codes." for col in UNDOCUMENTED},
}


def _code(value: object) -> int | None:
    """The integer code of a cell, None for a blank one (NaN, None, empty)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else None


def decode_value(column: str, value: object) -> str | None:
    """A coded cell as people read it: the documented meaning, "cluster N" for a genomic cluster, else "code N".

    Blank cells stay None. A value outside a documented code book reads "code N (undocumented)".
    """
    code = _code(value)
    if code is None:
        return None if value is None or (isinstance(value, float) and math.isnan(value)) or value == "" else str(value)
    if column in DOCUMENTED:
        meaning = DOCUMENTED[column].get(code)
        return meaning if meaning is not None else f"code {code} (undocumented)"
    if column in CLUSTER_PLATFORMS:
        return f"cluster {code}"
    return f"code {code}"


def is_coded(column: str) -> bool:
    """Whether ``column`` holds codes this module reads (the age, in years, is a number, not a code)."""
    return column in CLUSTER_PLATFORMS or column in DOCUMENTED or column in UNDOCUMENTED


def decode_column(column: str, values: Iterable[object]) -> list[str | None]:
    return [decode_value(column, v) for v in values]
