"""What a comparison is saved as -- the same bytes for the page's downloads and the CLI's folder.

``comparison_document`` is the one JSON document (the registration, the change table, the categories); the CSV is
the table's rows, and the PDF page (``report.pair``) prints the document's numbers, so the three cannot disagree.
NIfTI files go onto the **baseline's** own grid (``Volume.mask_on_source_grid``): the follow-up's FLAIR and mask
after registration open over the baseline study in 3D Slicer.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from lggdemo import NOT_FOR_DIAGNOSIS, __version__
from lggdemo.longitudinal.pictures import change_overlay, checkerboard, key_slice, visit_picture
from lggdemo.longitudinal.pipeline import Comparison
from lggdemo.patient.exporters import mask_nifti

FILES = ("comparison.json", "change.csv", "followup_registered.nii.gz", "baseline_mask.nii.gz",
         "followup_mask.nii.gz", "comparison.pdf")


@dataclass(frozen=True)
class _Mask:
    """What ``exporters.mask_nifti`` needs of a prediction."""

    mask: np.ndarray
    model_version: str


def comparison_document(comparison: Comparison, generated: datetime | None = None) -> dict[str, Any]:
    """The pair's JSON document: the disclaimer, versions and the comparison (``Comparison.to_dict``)."""
    when = generated or datetime.now(timezone.utc)
    return {"disclaimer": NOT_FOR_DIAGNOSIS, "lggdemo_version": __version__,
            "generated": when.strftime("%Y-%m-%dT%H:%M:%SZ"), **comparison.to_dict()}


def comparison_json(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()


def table_csv(comparison: Comparison) -> bytes:
    """The change table as a person reads it (measure, baseline, follow-up, change), then the verdict sentences."""
    rows = comparison.table.rows()
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["measure", "baseline", "follow-up", "change"])
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


def registered_flair_nifti(comparison: Comparison) -> bytes:
    """The registered follow-up FLAIR (uint8) on the baseline's source grid, as ``.nii.gz`` bytes."""
    import nibabel as nib

    baseline = comparison.baseline
    flair = comparison.followup_on_baseline[..., 1].astype(np.float32) / 255.0
    data = np.rint(baseline.probability_on_source_grid(flair) * 255.0).astype(np.uint8)  # bilinear in-plane, as a map
    img = nib.Nifti1Image(data, baseline.grid.affine)
    img.header.set_data_dtype(np.uint8)
    img.header["descrip"] = f"lggdemo follow-up FLAIR on {baseline.name}'s grid"[:79].encode()
    return gzip.compress(img.to_bytes(), compresslevel=6, mtime=0)


def pair_pictures(comparison: Comparison, index: int | None = None) -> dict[str, np.ndarray]:
    """The pictures of one slice (default: the most changed): baseline, follow-up, change overlay, checkerboard."""
    c = comparison
    i = key_slice(c.change_map, c.baseline_mask, c.followup_mask) if index is None else int(index)
    doc = c.table.to_dict()
    return {
        "baseline": visit_picture(c.baseline.slices[i], c.baseline_mask[i], i, doc["baseline"]["measurements"]),
        "followup": visit_picture(c.followup_on_baseline[i], c.followup_mask[i], i, doc["followup"]["measurements"]),
        "change": change_overlay(c.followup_on_baseline[i, ..., 1], c.change_map[i],
                                 c.baseline_mask[i] & c.followup_mask[i]),
        "checkerboard": checkerboard(c.baseline.slices[i, ..., 1], c.followup_on_baseline[i, ..., 1]),
        "index": np.array(i),
    }


def comparison_files(comparison: Comparison, *, pdf: bool = True, generated: datetime | None = None) -> dict[str, bytes]:
    """Every output of a comparison, by file name (see :data:`FILES`)."""
    document = comparison_document(comparison, generated)
    version = comparison.model_version or "given masks"
    out = {
        "comparison.json": comparison_json(document),
        "change.csv": table_csv(comparison),
        "followup_registered.nii.gz": registered_flair_nifti(comparison),
        "baseline_mask.nii.gz": mask_nifti(comparison.baseline, _Mask(comparison.baseline_mask, version)),
        "followup_mask.nii.gz": mask_nifti(comparison.baseline, _Mask(comparison.followup_mask, version)),
    }
    if pdf:
        from lggdemo.report.pair import pair_pdf

        pictures = pair_pictures(comparison)
        out["comparison.pdf"] = pair_pdf(document, comparison.table.rows(), pictures, generated=generated)
    return out
