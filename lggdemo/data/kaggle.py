"""The ``kaggle_3m`` layout: which patients and slices exist, their masks and clinical data.

Everything downstream (EDA, training, evaluation, the example button on Predict) reads the dataset
through :class:`DatasetIndex`, so the layout's rules -- numeric slice order, mask pairing, the
coded ``data.csv`` -- are applied once. A malformed tree never raises for one bad patient: the
problem is listed in ``index.problems`` and the good patients still load.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

try:
    import fcntl

    msvcrt = None
except ImportError:  # Windows

    fcntl = None  # type: ignore[assignment]

from lggdemo.data.imageio import SLICE_SIZE, ImageDecodeError, decode_image, decode_mask

GRADE_CODES = {1: "G2", 2: "G3"}
SEX_CODES = {1: "female", 2: "male"}
#: Columns that leak the grade label (a pathology result and an outcome); never model inputs.
LEAKY_COLUMNS = ("neoplasm_histologic_grade", "histological_type", "death01")
_SLICE_RE = re.compile(r"^(?P<pid>.+)_(?P<num>\d+)\.tif$")


class DatasetError(RuntimeError):
    """The folder cannot be used as a dataset at all (missing, empty, not the kaggle_3m layout)."""


@dataclass(frozen=True)
class Problem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True)
class SliceRecord:
    patient_id: str  # the folder name, e.g. TCGA_CS_4942_19970222
    number: int  # 1-based, inferior to superior (slice 1 at the skull base)
    image_path: Path
    mask_path: Path


@dataclass(frozen=True)
class Clinical:
    """The clinical fields a person can type on the Predict page; ``None`` means unknown."""

    age: float | None = None
    sex: str | None = None  # "female" | "male"
    grade: str | None = None  # "G2" | "G3" -- the label, never a model input


@dataclass
class DatasetIndex:
    root: Path
    patients: dict[str, tuple[SliceRecord, ...]]
    clinical: pd.DataFrame  # one row per case id (TCGA_CS_4942), decoded columns first
    problems: list[Problem] = field(default_factory=list)
    synthetic: bool = False

    @property
    def patient_ids(self) -> list[str]:
        return list(self.patients)

    @property
    def n_slices(self) -> int:
        return sum(len(s) for s in self.patients.values())

    def slices(self) -> list[SliceRecord]:
        return [s for recs in self.patients.values() for s in recs]

    def clinical_for(self, patient_id: str) -> Clinical:
        row = self.clinical.loc[case_id(patient_id)] if case_id(patient_id) in self.clinical.index else None
        if row is None:
            return Clinical()

        def clean(v: object) -> object:
            return None if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA else v

        age = clean(row.get("age"))
        return Clinical(
            age=float(age) if age is not None else None,
            sex=clean(row.get("sex")),  # type: ignore[arg-type]
            grade=clean(row.get("grade")),  # type: ignore[arg-type]
        )

    def fingerprint(self) -> str:
        """Changes whenever a file is added, removed or rewritten; keys every on-disk cache."""
        h = hashlib.sha256(str(self.root.resolve()).encode())
        paths = [self.root / "data.csv"] + [p for s in self.slices() for p in (s.image_path, s.mask_path)]
        for p in paths:
            try:
                st = p.stat()
            except OSError:
                continue
            h.update(f"{p.relative_to(self.root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return h.hexdigest()[:16]


# --- confinement: LGG_ALLOWED_ROOT holds for every file the dataset layer opens, not only the typed path ------

LEAVES_ROOT = "is a symlink that leaves the allowed root"


def allowed_root() -> Path | None:
    """``LGG_ALLOWED_ROOT`` resolved, or None when the operator has not confined the sidebar's paths."""
    value = os.environ.get("LGG_ALLOWED_ROOT")
    return Path(value).expanduser().resolve() if value else None


def leaves_allowed_root(path: Path) -> bool:
    """True for a file or folder that lies under ``LGG_ALLOWED_ROOT`` by name but resolves outside it.

    A dataset inside the allowed root may hold a symlinked patient folder, slice or ``data.csv`` that points
    anywhere on the server; following it would show what the root is meant to keep out. Datasets outside the
    allowed root (the operator's ``LGG_DATA_DIR``, the built-in phantoms in the cache) are not confined.
    """
    root = allowed_root()
    if root is None:
        return False
    named = Path(os.path.abspath(path))
    raw = Path(os.path.abspath(Path(os.environ["LGG_ALLOWED_ROOT"]).expanduser()))
    if not (named.is_relative_to(root) or named.is_relative_to(raw)):
        return False
    return not Path(path).resolve().is_relative_to(root)


def case_id(patient_id: str) -> str:
    """``TCGA_CS_4942_19970222`` -> ``TCGA_CS_4942`` (data.csv's key: the first three parts)."""
    return "_".join(patient_id.split("_")[:3])


def resolve_root(path: str | os.PathLike[str]) -> Path:
    """Accept either the ``kaggle_3m`` folder or a folder that contains it."""
    p = Path(path).expanduser()
    if (p / "kaggle_3m").is_dir():
        return p / "kaggle_3m"
    return p


def looks_like_dataset(path: str | os.PathLike[str]) -> bool:
    root = resolve_root(path)
    return root.is_dir() and (root / "data.csv").is_file()


def decode_clinical(raw: pd.DataFrame) -> pd.DataFrame:
    """Readable grade/sex/age first, every original column kept with its code."""
    out = pd.DataFrame(index=raw["Patient"].astype(str).str.strip())
    out.index.name = "case_id"

    def coded(col: str, codes: dict[int, str]) -> pd.Series:
        if col not in raw:
            return pd.Series([None] * len(raw), index=out.index, dtype=object)
        vals = pd.to_numeric(raw[col], errors="coerce").to_numpy()
        return pd.Series([codes.get(int(v)) if not np.isnan(v) else None for v in vals], index=out.index, dtype=object)

    out["grade"] = coded("neoplasm_histologic_grade", GRADE_CODES)
    out["sex"] = coded("gender", SEX_CODES)
    ages = pd.to_numeric(raw.get("age_at_initial_pathologic"), errors="coerce") if "age_at_initial_pathologic" in raw else np.nan
    out["age"] = np.asarray(ages, dtype=float) if not np.isscalar(ages) else np.nan
    for col in raw.columns:
        if col != "Patient":
            out[col] = raw[col].to_numpy()
    return out[~out.index.duplicated(keep="first")]


def _check_slice_file(path: Path, expect_mode: tuple[str, ...]) -> str | None:
    try:
        with Image.open(path) as im:
            size, mode = im.size, im.mode
    except (OSError, SyntaxError, ValueError) as exc:
        return f"unreadable file ({exc.__class__.__name__})"
    if size != (SLICE_SIZE, SLICE_SIZE):
        return f"wrong image size {size[0]}×{size[1]} (expected {SLICE_SIZE}×{SLICE_SIZE})"
    if mode not in expect_mode:
        return f"unexpected image mode {mode}"
    return None


def scan_dataset(path: str | os.PathLike[str], *, synthetic: bool = False) -> DatasetIndex:
    """Index a ``kaggle_3m`` folder. Raises :class:`DatasetError` only when nothing usable is there."""
    root = resolve_root(path)
    if not root.exists():
        raise DatasetError(f"Dataset folder not found: {root}")
    if not root.is_dir():
        raise DatasetError(f"Not a folder: {root}")
    if leaves_allowed_root(root):
        raise DatasetError(f"{root} {LEAVES_ROOT}.")
    problems: list[Problem] = []
    csv = root / "data.csv"
    clinical = pd.DataFrame(columns=["grade", "sex", "age"])
    clinical.index.name = "case_id"
    if leaves_allowed_root(csv):
        problems.append(Problem("data.csv", f"{LEAVES_ROOT}; clinical data ignored"))
    elif csv.is_file():
        try:
            raw = pd.read_csv(csv)
            if "Patient" not in raw:
                problems.append(Problem("data.csv", "no 'Patient' column; clinical data ignored"))
            else:
                clinical = decode_clinical(raw)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            problems.append(Problem("data.csv", f"cannot be parsed ({exc.__class__.__name__}); clinical data ignored"))
    else:
        problems.append(Problem("data.csv", "missing; grade, age and sex are unknown for every patient"))

    patients: dict[str, tuple[SliceRecord, ...]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        pid = folder.name
        records: list[SliceRecord] = []
        if leaves_allowed_root(folder):
            problems.append(Problem(pid, f"{LEAVES_ROOT}; patient skipped"))
            continue
        try:
            files = sorted(folder.iterdir())
        except OSError as exc:  # removed or made unreadable while the tree was being listed
            problems.append(Problem(pid, f"cannot be listed ({exc.__class__.__name__}); patient skipped"))
            continue
        for f in files:
            m = _SLICE_RE.match(f.name)
            if not m or f.name.endswith("_mask.tif"):
                continue
            if m.group("pid") != pid:
                problems.append(Problem(f"{pid}/{f.name}", "file name does not match its folder; skipped"))
                continue
            mask = folder / f"{pid}_{m.group('num')}_mask.tif"
            if not mask.is_file():
                problems.append(Problem(f"{pid}/{f.name}", "image without mask; skipped"))
                continue
            outside = next((p for p in (f, mask) if leaves_allowed_root(p)), None)
            if outside is not None:
                problems.append(Problem(f"{pid}/{outside.name}", f"{LEAVES_ROOT}; slice skipped"))
                continue
            bad = _check_slice_file(f, ("RGB",)) or _check_slice_file(mask, ("L", "1", "P"))
            if bad:
                problems.append(Problem(f"{pid}/{f.name}", f"{bad}; skipped"))
                continue
            records.append(SliceRecord(pid, int(m.group("num")), f, mask))
        if records:
            patients[pid] = tuple(sorted(records, key=lambda r: r.number))
        else:
            problems.append(Problem(pid, "no usable slices; patient skipped"))
    if not patients:
        detail = "; ".join(str(p) for p in problems[:3])
        raise DatasetError(f"No patient folders with <ID>_<n>.tif slices in {root}" + (f" ({detail})" if detail else ""))
    return DatasetIndex(root=root, patients=patients, clinical=clinical, problems=problems, synthetic=synthetic)


def _confined(path: Path) -> Path:
    """``path``, checked again at the moment it is opened (a link may have been swapped in since the scan)."""
    if leaves_allowed_root(path):
        raise DatasetError(f"{path} {LEAVES_ROOT}.")
    return path


def load_image(record: SliceRecord) -> np.ndarray:
    """(256, 256, 3) uint8; raises DatasetError naming the file when it cannot be decoded."""
    _confined(record.image_path)
    try:
        return decode_image(record.image_path).array
    except ImageDecodeError as exc:
        raise DatasetError(str(exc)) from exc


def load_mask(record: SliceRecord) -> np.ndarray:
    """(256, 256) uint8 of 0/1."""
    _confined(record.mask_path)
    try:
        return decode_mask(record.mask_path).array
    except ImageDecodeError as exc:
        raise DatasetError(str(exc)) from exc


















