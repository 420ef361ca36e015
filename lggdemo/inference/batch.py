"""Thousands of studies: find them, share them out between ranks, skip the finished ones, merge one summary.

``lggdemo-predict --tree ROOT`` (or ``--manifest studies.csv``) ``--out DIR`` runs every study of a folder
tree or a manifest through :func:`process_study` (the single-input CLI's own steps) and writes::

    DIR/studies/<key>/<outputs>       masks, probability map, PDF: each written atomically (temp file, rename)
    DIR/studies/<key>/done.json       the study's report row, its outputs' sizes and SHA-256: written LAST
    DIR/summary.csv                   one row per study (the report's PATIENT_COLUMNS), merged from the done.json

**Resumable.** A study is complete when its ``done.json`` exists and every output it lists is there with the size
and hash it records; a rerun skips complete studies and redoes any other (outputs without a marker are what a
killed run leaves: never trusted). Before a study is (re)done, the temp files a killed write leaves behind are
removed from its folder, so no half-written file survives a rerun. Studies that failed (an unreadable input) are
complete with their error; ``--retry-errors`` redoes them.

**Shardable.** Rank r of n takes the studies whose position in the sorted study list is r modulo n; ranks never
share a study folder. r/n come from ``--shard r/n`` (any scheduler, e.g. an array job) or from torchrun's
``RANK``/``WORLD_SIZE``. The summary is a pure function of the markers (:func:`merge_summary`), so writing it is
idempotent: under torchrun rank 0 writes it after a barrier; with ``--shard``, whichever shard finds every study
complete writes it (two writing at once write the same bytes, each atomically); ``--merge`` writes it on demand.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lggdemo._fs import atomic_write_bytes
from lggdemo.data.kaggle import Clinical
from lggdemo.inference.reports import PATIENT_COLUMNS, csv_bytes
from lggdemo.patient.exporters import safe_name
from lggdemo.patient.readers.dicom import has_dicom_prefix
from lggdemo.patient.readers.kaggle import is_slice_name
from lggdemo.patient.readers.nifti import guess_roles, is_nifti_name

MARKER = "done.json"
STUDIES = "studies"
SUMMARY = "summary.csv"
SUMMARY_COLUMNS = ("study", "status", *PATIENT_COLUMNS, "outputs")
MANIFEST_COLUMNS = ("path", "id", "age", "sex")


class BatchError(ValueError):
    """A tree, manifest or shard specification that cannot be run; the message says what to fix."""


@dataclass(frozen=True)
class Study:
    """One input of a batch: ``key`` names its output folder (unique within the batch, file-name safe)."""

    key: str
    path: Path
    clinical: Clinical | None = None  # the manifest's age/sex; None: the command line's


# --- finding studies ---------------------------------------------------------------------------------


def _is_dicom_file(p: Path) -> bool:
    if p.suffix.lower() == ".dcm":
        return True
    try:
        with open(p, "rb") as fh:
            return has_dicom_prefix(fh.read(132 + 1))
    except OSError:
        return False


def _study_paths(folder: Path) -> Iterable[Path]:
    """A folder is one study when it holds Kaggle slices, DICOM files or a set of named sequences (flair, t1, ...,
    mask); otherwise each NIfTI file and each .zip in it is one, and its subfolders are searched the same way."""
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    files = [p for p in entries if p.is_file()]
    if any(is_slice_name(p.name) for p in files) or any(_is_dicom_file(p) for p in files if not is_nifti_name(p.name)
                                                       and p.suffix.lower() not in (".zip", ".csv", ".txt", ".md")):
        yield folder
        return
    nifti = [p for p in files if is_nifti_name(p.name)]
    named = sum(v is not None for v in guess_roles([p.name for p in nifti]).values()) if len(nifti) > 1 else 0
    if named >= 2:  # flair + t1 (+ mask ...): one patient's sequences
        yield folder
    else:
        yield from nifti
    yield from (p for p in files if p.suffix.lower() == ".zip")
    for sub in entries:
        if sub.is_dir():
            yield from _study_paths(sub)


def _keys(relative: Sequence[str]) -> list[str]:
    """Readable unique folder names: the relative path with ``__`` for separators; a short hash where two clash."""
    base = [safe_name(r.replace("/", "__").replace("\\", "__")) for r in relative]
    clash = {k for k in base if base.count(k) > 1}
    return [f"{k}-{hashlib.sha1(r.encode()).hexdigest()[:8]}" if k in clash else k for k, r in zip(base, relative)]


def discover(root: Path) -> list[Study]:
    """Every study under ``root`` (see :func:`_study_paths`), sorted by key."""
    root = Path(root)
    if not root.is_dir():
        raise BatchError(f"{root}: --tree needs a folder.")
    paths = [root] if next(_study_paths(root), None) == root else list(_study_paths(root))
    rel = [p.relative_to(root).as_posix() if p != root else root.name for p in paths]
    if not paths:
        raise BatchError(f"{root}: no study found (Kaggle-layout folders, NIfTI files or folders, DICOM folders, .zip).")
    return sorted((Study(k, p) for k, p in zip(_keys(rel), paths)), key=lambda s: s.key)


def read_manifest(path: Path) -> list[Study]:
    """A CSV with a ``path`` column (relative to the manifest's folder or absolute) and optional ``id``, ``age``,
    ``sex`` columns; one study per row, sorted by key."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise BatchError(f"{path}: the manifest cannot be read ({exc.strerror or exc}).") from exc
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "path" not in reader.fieldnames:
        raise BatchError(f"{path}: a manifest needs a 'path' column (optional: {', '.join(MANIFEST_COLUMNS[1:])}).")
    rows = list(reader)
    base = Path(path).resolve().parent
    paths = [(base / r["path"].strip()) if not Path(r["path"].strip()).is_absolute() else Path(r["path"].strip())
             for r in rows]
    ids = [(r.get("id") or "").strip() or r["path"].strip() for r in rows]
    keys = _keys(ids)
    if len(set(keys)) != len(keys):
        raise BatchError(f"{path}: two rows name the same study ({sorted(k for k in keys if keys.count(k) > 1)[0]}).")
    out = []
    for line, (r, key, p) in enumerate(zip(rows, keys, paths), start=2):
        age, sex = (r.get("age") or "").strip(), (r.get("sex") or "").strip().lower()
        try:
            clinical = Clinical(float(age) if age else None, sex or None) if age or sex else None
        except ValueError as exc:
            raise BatchError(f"{path}, line {line}: age {age!r} is not a number.") from exc
        out.append(Study(key, p, clinical))
    return sorted(out, key=lambda s: s.key)


# --- ranks -------------------------------------------------------------------------------------------


def parse_shard(text: str | None, env: dict[str, str] | None = None) -> tuple[int, int]:
    """(rank, world): ``--shard r/n`` when given, else torchrun's RANK and WORLD_SIZE, else (0, 1)."""
    env = dict(os.environ if env is None else env)
    if text:
        try:
            r, n = (int(x) for x in text.split("/"))
        except ValueError as exc:
            raise BatchError(f"--shard takes r/n (e.g. 0/4), got {text!r}.") from exc
    else:
        r, n = int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1"))
    if n < 1 or not 0 <= r < n:
        raise BatchError(f"shard {r}/{n}: the rank must lie in 0..{n - 1}.")
    return r, n


def my_share(studies: Sequence[Study], rank: int, world: int) -> list[Study]:
    return list(studies[rank::world])


# --- markers ------------------------------------------------------------------------------------------


def study_dir(out: Path, study: Study) -> Path:
    return Path(out) / STUDIES / study.key


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The study's ``done.json`` when it and every output it lists are intact; None otherwise (redo the study)."""
    try:
        marker = json.loads((folder / MARKER).read_text())
        for name, meta in marker["outputs"].items():
            f = folder / name
            if not f.is_file() or f.stat().st_size != meta["bytes"] or _digest(f) != meta["sha256"]:
                return None
        return marker if isinstance(marker.get("row"), dict) else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def clean_partial(folder: Path) -> list[str]:
    """Remove what a killed run can leave in a study folder: temp files of interrupted atomic writes (``.name.*``)
    and, when there is no valid marker, every output (a rerun writes them afresh). Returns the removed names."""
    if not folder.is_dir():
        return []
    keep = read_marker(folder) is not None
    removed = []
    for p in folder.iterdir():
        if p.is_file() and (p.name.startswith(".") or not keep):
            p.unlink(missing_ok=True)
            removed.append(p.name)
    return removed


def write_marker(folder: Path, study: Study, row: dict[str, Any], written: Sequence[Path],
                 notes: Sequence[str] = ()) -> None:
    """The study's completion marker, written last: its row and the outputs it vouches for."""
    outputs = {p.name: {"bytes": p.stat().st_size, "sha256": _digest(p)} for p in written}
    status = "error" if row.get("error") else "ok"
    doc = {"study": study.key, "input": str(study.path), "status": status, "row": row, "notes": list(notes),
           "outputs": outputs}
    atomic_write_bytes(folder / MARKER, (json.dumps(doc, indent=1) + "\n").encode())


# --- the summary --------------------------------------------------------------------------------------


def merge_summary(out: Path, studies: Sequence[Study]) -> tuple[list[dict[str, Any]], list[Study]]:
    """(summary rows in study order, studies not complete yet), from the markers alone."""
    rows, missing = [], []
    for s in studies:
        marker = read_marker(study_dir(out, s))
        if marker is None:
            missing.append(s)
            continue
        rows.append({"study": s.key, "status": marker["status"], **marker["row"], "input": str(s.path),
                     "outputs": sorted(marker["outputs"])})
    return rows, missing


def write_summary(out: Path, studies: Sequence[Study]) -> tuple[Path | None, list[Study]]:
    """Write ``summary.csv`` when every study is complete (idempotent: the same markers give the same bytes)."""
    rows, missing = merge_summary(out, studies)
    if missing:
        return None, missing
    path = Path(out) / SUMMARY
    atomic_write_bytes(path, csv_bytes(rows, SUMMARY_COLUMNS))
    return path, []
