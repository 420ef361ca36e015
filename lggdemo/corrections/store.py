"""Corrected masks saved as training examples: a kaggle_3m folder of their own under ``LGG_RUNS_DIR/corrections``.

Why this layout: the corrections are read by the same reader as the dataset (``lggdemo.data.kaggle.scan_dataset``),
so the trainer, the evaluator and the EDA page can use them without a second format::

    corrections/
      .lock                                   held while a save or a delete changes the folder
      data.csv                                Patient + the clinical codes the source recorded
      TCGA_CS_4942_19970222/                  one folder per source patient (its own ID), or upload_<date>
        TCGA_CS_4942_19970222_1.tif           the slice (256×256 RGB), written last
        TCGA_CS_4942_19970222_1_mask.tif      the corrected mask (0/255)
        TCGA_CS_4942_19970222_1.json          provenance: when, which weights, areas, Dice, the source slice

Numbers are given out under the lock, one per save, so two tabs saving the same slice at once both land
(two examples) and neither overwrites the other. Every file is written to a temporary name and renamed;
the image, which the reader keys on, comes last, so a reader never sees half an example, and a save that
fails midway removes what it had written. Nothing here ever writes into the source dataset.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from lggdemo._fs import atomic_write_bytes, exclusive_lock, runs_dir
from lggdemo.data.imageio import SLICE_SIZE, ImageDecodeError, decode_image, decode_mask
from lggdemo.data.kaggle import Clinical, case_id
from lggdemo.metrics.segmentation import dice

FOLDER = "corrections"
LOCK_FILE = ".lock"
CSV_FILE = "data.csv"
PROVENANCE_VERSION = 1
_NAME_RE = re.compile(r"^(?P<pid>.+)_(?P<num>\d+)(?P<kind>\.tif|_mask\.tif|\.json)$")
_SAFE_RE = re.compile(r"[^A-Za-z0-9_-]+")
_GRADE_CODES = {"G2": 1, "G3": 2}
_SEX_CODES = {"female": 1, "male": 2}


class CorrectionError(RuntimeError):
    """A correction that cannot be saved, read or deleted; the message says why, for the page."""


def corrections_dir() -> Path:
    """Where corrections live: beside the runs (``LGG_RUNS_DIR``), never in the dataset or ``weights/``."""
    return runs_dir() / FOLDER


def folder_name(patient_id: str | None, when: dt.datetime | None = None) -> str:
    """The patient folder for a source patient: its own ID (letters, digits, ``_-``), else ``upload_<date>``."""
    cleaned = _SAFE_RE.sub("_", patient_id or "").strip("_-")
    if cleaned:
        return cleaned[:120]
    return f"upload_{(when or dt.datetime.now()).strftime('%Y%m%d')}"


@dataclass(frozen=True)
class Provenance:
    """Where a correction came from and what it changed; written beside the slice as JSON."""

    saved_at: str  # ISO 8601, UTC
    weights_version: str  # the model card version of the weights that drew the original mask
    source: str  # the slice's file name, or the patient's name and slice number
    patient_id: str | None  # the source patient when known (the folder's name)
    source_slice: int | None  # 1-based slice number in the source patient, when known
    mode: str  # "slice" or "whole patient": the Predict view it was made in
    original_area_px: int
    corrected_area_px: int
    edits: int = 0
    truth_area_px: int | None = None
    dice_original: float | None = None  # the model's mask against the truth, when a truth existed
    dice_corrected: float | None = None  # the corrected mask against the same truth
    clinical: dict[str, Any] = field(default_factory=dict)  # age, sex, grade as the source recorded them
    version: int = PROVENANCE_VERSION

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2) + "\n").encode()

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> Provenance:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in value.items() if k in known})


@dataclass(frozen=True)
class Correction:
    """One saved correction as found on disk; ``problem`` says why it cannot be used (it is still listed)."""

    id: str  # "<folder>_<n>": unique in the corrections folder
    patient_id: str  # the folder's name
    number: int
    image_path: Path
    mask_path: Path
    provenance: Provenance | None
    problem: str | None = None  # why it cannot be used (the image or the mask is gone)
    note: str | None = None  # something wrong that does not stop it being used (an unreadable provenance file)

    @property
    def usable(self) -> bool:
        return self.problem is None


def _tiff(array: np.ndarray) -> bytes:
    """TIFF bytes of a uint8 (H, W) mask (mode L) or (H, W, 3) slice (RGB), as the dataset stores them."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(buf, format="TIFF")
    return buf.getvalue()


def _check_arrays(image: np.ndarray, corrected: np.ndarray, original: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.shape != (SLICE_SIZE, SLICE_SIZE, 3):
        raise CorrectionError(f"A training example must be a {SLICE_SIZE}×{SLICE_SIZE} RGB uint8 slice; got "
                              f"{img.dtype} {img.shape}.")
    masks = []
    for name, m in (("corrected", corrected), ("original", original)):
        arr = np.asarray(m)
        if arr.shape != img.shape[:2]:
            raise CorrectionError(f"The {name} mask is {arr.shape}, but the slice is {img.shape[:2]}: it belongs to "
                                  "another slice.")
        masks.append((arr > 0).astype(np.uint8))
    return img, masks[0], masks[1]


def _guard(root: Path, protect: Iterable[Path]) -> None:
    resolved = root.resolve()
    for p in protect:
        target = Path(p).resolve()
        if resolved == target or resolved.is_relative_to(target):
            raise CorrectionError(f"The corrections folder {root} lies inside the dataset {target}: corrections are "
                                  "never written into the source dataset. Set LGG_RUNS_DIR elsewhere.")


def _numbers_in(folder: Path) -> set[int]:
    found: set[int] = set()
    for f in folder.iterdir() if folder.is_dir() else ():
        m = _NAME_RE.match(f.name)
        if m and m.group("pid") == folder.name:
            found.add(int(m.group("num")))
    return found


def _write_csv(root: Path) -> None:
    """data.csv rebuilt from the provenance files: one row per patient folder (under the lock)."""
    rows: dict[str, dict[str, Any]] = {}
    for c in _scan(root):
        row = rows.setdefault(case_id(c.patient_id), {"Patient": case_id(c.patient_id)})
        clinical = c.provenance.clinical if c.provenance else {}
        if clinical.get("grade") in _GRADE_CODES:
            row["neoplasm_histologic_grade"] = _GRADE_CODES[clinical["grade"]]
        if clinical.get("sex") in _SEX_CODES:
            row["gender"] = _SEX_CODES[clinical["sex"]]
        if isinstance(clinical.get("age"), (int, float)):
            row["age_at_initial_pathologic"] = clinical["age"]
    columns = ["Patient", "neoplasm_histologic_grade", "gender", "age_at_initial_pathologic"]
    table = pd.DataFrame(list(rows.values()), columns=columns)
    atomic_write_bytes(root / CSV_FILE, table.to_csv(index=False).encode())


def _disk_error(exc: OSError, root: Path, doing: str) -> CorrectionError:
    reason = exc.strerror or exc.__class__.__name__
    return CorrectionError(f"The corrections folder {root} cannot be written ({reason}) while {doing}; nothing already "
                           "saved was changed.")


def save_correction(image: np.ndarray, corrected: np.ndarray, original: np.ndarray, *, weights_version: str,
                    source: str, patient_id: str | None = None, source_slice: int | None = None, mode: str = "slice",
                    truth: np.ndarray | None = None, clinical: Clinical | None = None, edits: int = 0,
                    root: Path | None = None, protect: Iterable[Path] = ()) -> Correction:
    """Store one slice and its corrected mask as a training example; returns it as listed afterwards.

    ``original`` is the model's mask (for the provenance's areas and Dice); ``truth`` the ground truth when
    one existed; ``protect`` folders (the source dataset) the corrections folder must not lie in. Raises
    :class:`CorrectionError` for mismatched arrays, a protected or unwritable folder; in every case the
    corrections already saved are untouched and no half-written example is left behind.
    """
    img, fixed, model_mask = _check_arrays(image, corrected, original)
    truth_mask = None
    if truth is not None:
        truth_mask = (np.asarray(truth) > 0).astype(np.uint8)
        if truth_mask.shape != fixed.shape:
            raise CorrectionError(f"The ground truth is {truth_mask.shape}, the slice {fixed.shape}.")
    root = Path(root) if root is not None else corrections_dir()
    _guard(root, protect)
    now = dt.datetime.now(dt.timezone.utc)
    c = clinical or Clinical()
    provenance = Provenance(
        saved_at=now.isoformat(timespec="seconds"), weights_version=weights_version, source=source,
        patient_id=patient_id, source_slice=source_slice, mode=mode, original_area_px=int(model_mask.sum()),
        corrected_area_px=int(fixed.sum()), edits=int(edits),
        truth_area_px=None if truth_mask is None else int(truth_mask.sum()),
        dice_original=None if truth_mask is None else round(dice(model_mask, truth_mask), 4),
        dice_corrected=None if truth_mask is None else round(dice(fixed, truth_mask), 4),
        clinical={k: v for k, v in (("age", c.age), ("sex", c.sex), ("grade", c.grade)) if v is not None})
    pid = folder_name(patient_id, now)
    written: list[Path] = []
    try:
        root.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(root / LOCK_FILE):
            folder = root / pid
            folder.mkdir(exist_ok=True)
            number = max(_numbers_in(folder), default=0) + 1
            stem = folder / f"{pid}_{number}"
            files = ((stem.with_name(stem.name + "_mask.tif"), _tiff(fixed * 255)),
                     (stem.with_suffix(".json"), provenance.to_json()),
                     (stem.with_suffix(".tif"), _tiff(img)))  # the image last: the reader keys on it
            try:
                for path, data in files:
                    atomic_write_bytes(path, data)
                    written.append(path)
                _write_csv(root)
            except BaseException:
                for path in written:
                    path.unlink(missing_ok=True)
                if not any(folder.iterdir()):
                    folder.rmdir()
                raise
    except OSError as exc:
        raise _disk_error(exc, root, "saving a correction") from exc
    return Correction(f"{pid}_{number}", pid, number, files[2][0], files[0][0], provenance)


def _read_provenance(path: Path) -> tuple[Provenance | None, str | None]:
    if not path.is_file():
        return None, None
    try:
        value = json.loads(path.read_text())
        if not isinstance(value, dict):
            raise ValueError("not a JSON object")
        return Provenance.from_dict(value), None
    except (OSError, ValueError, TypeError) as exc:
        return None, f"its provenance file cannot be read ({exc.__class__.__name__})"


def _scan(root: Path) -> list[Correction]:
    out: list[Correction] = []
    try:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []
    for folder in folders:
        try:
            numbers = sorted(_numbers_in(folder))
        except OSError:
            continue
        for n in numbers:
            stem = folder / f"{folder.name}_{n}"
            image, mask = stem.with_suffix(".tif"), stem.with_name(stem.name + "_mask.tif")
            provenance, note = _read_provenance(stem.with_suffix(".json"))
            problem = None
            if not image.is_file():
                problem = "its image is no longer there (deleted or moved outside the app)"
            elif not mask.is_file():
                problem = "its mask is no longer there"
            out.append(Correction(stem.name, folder.name, n, image, mask, provenance, problem, note))
    return out


def list_corrections(root: Path | None = None) -> list[Correction]:
    """Every correction in the folder, newest first; broken ones included with their ``problem``."""
    found = _scan(Path(root) if root is not None else corrections_dir())
    return sorted(found, key=lambda c: (c.provenance.saved_at if c.provenance else "", c.id), reverse=True)


def usable_corrections(root: Path | None = None) -> list[Correction]:
    return [c for c in list_corrections(root) if c.usable]


def find_correction(correction_id: str, root: Path | None = None) -> Correction:
    found = next((c for c in list_corrections(root) if c.id == correction_id), None)
    if found is None:
        raise CorrectionError(f"No correction {correction_id!r}: it was deleted (perhaps from another tab).")
    return found


def load_correction(correction: Correction) -> tuple[np.ndarray, np.ndarray]:
    """(image (256, 256, 3) uint8, corrected mask (256, 256) 0/1); CorrectionError when a file is gone or broken."""
    if correction.problem:
        raise CorrectionError(f"Correction {correction.id} cannot be shown: {correction.problem}.")
    try:
        return decode_image(correction.image_path).array, decode_mask(correction.mask_path).array
    except (ImageDecodeError, OSError) as exc:
        raise CorrectionError(f"Correction {correction.id} cannot be read: {exc}") from exc


def delete_correction(correction_id: str, root: Path | None = None) -> None:
    """Remove one correction's files (whatever of them is left); its patient folder goes when it is empty."""
    root = Path(root) if root is not None else corrections_dir()
    if not re.fullmatch(r"[A-Za-z0-9_-]+_\d+", correction_id):
        raise CorrectionError(f"{correction_id!r} is not a correction's name.")
    try:
        with exclusive_lock(root / LOCK_FILE):
            found = next((c for c in _scan(root) if c.id == correction_id), None)
            if found is None:
                raise CorrectionError(f"No correction {correction_id!r}: it was already deleted (perhaps from "
                                      "another tab).")
            for path in (found.image_path, found.mask_path, found.image_path.with_suffix(".json")):
                path.unlink(missing_ok=True)
            folder = found.image_path.parent
            if folder.is_dir() and not any(folder.iterdir()):
                shutil.rmtree(folder, ignore_errors=True)
            _write_csv(root)
    except OSError as exc:
        raise _disk_error(exc, root, "deleting a correction") from exc
