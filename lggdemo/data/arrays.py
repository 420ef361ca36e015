"""Whole-dataset tables and arrays, cached per dataset version: what EDA, training and evaluation iterate over.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lggdemo._fs import atomic_write_bytes, cache_dir
from lggdemo.data.imageio import SLICE_SIZE, resize_image, resize_mask
from lggdemo.data.kaggle import DatasetError, DatasetIndex, case_id, load_image, load_mask


def _still(index: DatasetIndex, fingerprint: str) -> bool:
    """True when the files a result was computed from are the ones its cache key names.

    A result computed while the tree changed (a folder regenerated or copied in meanwhile) must not be
    stored under the key of the tree it was started on: the next start would read it as the truth.
    """
    return index.fingerprint() == fingerprint


def slice_table(index: DatasetIndex) -> pd.DataFrame:
    """One row per slice with its tumour area in pixels; computed once per dataset version.

    A mask that cannot be read gets ``-1`` in the returned table; such a table is never stored, nor one whose
    files changed while it was computed, so an unlucky read cannot outlive the run that made it.
    """
    fingerprint = index.fingerprint()
    path = cache_dir() / f"areas-{fingerprint}.csv"
    if path.is_file():
        try:
            cached = pd.read_csv(path)
            # -1 rows come from an older version that stored unreadable (raced) masks: measure again.
            areas = cached["tumour_area_px"] if "tumour_area_px" in cached else None
            if len(cached) == index.n_slices and areas is not None and (areas >= 0).all():
                return cached
        except (pd.errors.ParserError, pd.errors.EmptyDataError):
            pass
    rows = []
    for rec in index.slices():
        try:
            area = int(load_mask(rec).sum())
        except DatasetError:
            area = -1
        rows.append({"patient_id": rec.patient_id, "slice": rec.number, "tumour_area_px": area})
    table = pd.DataFrame(rows, columns=["patient_id", "slice", "tumour_area_px"])
    if (table.tumour_area_px >= 0).all() and _still(index, fingerprint):
        atomic_write_bytes(path, table.to_csv(index=False).encode())
    return table


def patient_table(index: DatasetIndex) -> pd.DataFrame:
    """One row per patient folder: clinical fields, slice count and tumour volume in voxels."""
    areas = slice_table(index)
    per = areas[areas.tumour_area_px >= 0].groupby("patient_id").agg(
        slices=("slice", "size"),
        tumour_slices=("tumour_area_px", lambda a: int((a > 0).sum())),
        tumour_volume_voxels=("tumour_area_px", "sum"),
    )
    rows = []
    for pid in index.patient_ids:
        c = index.clinical_for(pid)
        rows.append({"patient_id": pid, "case_id": case_id(pid), "grade": c.grade, "sex": c.sex, "age": c.age})
    out = pd.DataFrame(rows).set_index("patient_id").join(per)
    return out.reset_index()


@dataclass(frozen=True)
class SliceArrays:
    """Every slice of a dataset as uint8 arrays: what training and evaluation iterate over."""

    images: np.ndarray  # (N, S, S, 3) uint8
    masks: np.ndarray  # (N, S, S) uint8 0/1
    patient_ids: np.ndarray  # (N,) str
    numbers: np.ndarray  # (N,) int


def slice_arrays(index: DatasetIndex, size: int = SLICE_SIZE) -> SliceArrays:
    """Decode (and resize) every slice once; cached as one .npz per dataset version and size.

    The cache is also the compact form of the dataset that can be carried to another machine.
    """
    fingerprint = index.fingerprint()
    path = cache_dir() / f"arrays-{fingerprint}-{size}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                return SliceArrays(z["images"], z["masks"], z["patient_ids"], z["numbers"])
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)
    recs = index.slices()
    images = np.empty((len(recs), size, size, 3), np.uint8)
    masks = np.empty((len(recs), size, size), np.uint8)
    for i, rec in enumerate(recs):
        images[i] = resize_image(load_image(rec), size)
        masks[i] = resize_mask(load_mask(rec), size)
    out = SliceArrays(images, masks, np.array([r.patient_id for r in recs]), np.array([r.number for r in recs]))
    buf = io.BytesIO()
    np.savez(buf, images=out.images, masks=out.masks, patient_ids=out.patient_ids, numbers=out.numbers)
    if _still(index, fingerprint):  # never store arrays decoded from files that changed meanwhile
        atomic_write_bytes(path, buf.getvalue())
    return out
