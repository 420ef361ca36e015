"""What a whole-patient mask is saved as: NIfTI and DICOM SEG masks, a PNG-stack zip (reports: inference.reports).

Masks go back onto the input's own grid (``Volume.mask_on_source_grid``): a NIfTI mask has the input's
shape and affine and opens over it in 3D Slicer; for DICOM input, a DICOM SEG (highdicom) references the
FLAIR series instance by instance (frame by frame for an Enhanced MR object), so OHIF and Slicer place it on
the images; sequences resampled onto FLAIR change nothing here, since FLAIR's grid is the volume's. Every
function returns bytes; :func:`write_outputs` is the one place that touches the disk (temp file then rename,
inside the output folder only).
"""

from __future__ import annotations

import gzip
import io
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lggdemo import __version__
from lggdemo._fs import atomic_write_bytes
from lggdemo.data.imageio import encode_png
from lggdemo.patient.readers.multiframe import frame_sources
from lggdemo.patient.volume import Volume, VolumeError

FORMATS = ("nifti", "dicom-seg", "png", "prob-nifti")
SEGMENT_LABEL = "Tumour (FLAIR abnormality)"


class PredictedMask(Protocol):
    """What an exporter needs of a prediction (``inference.wholepatient.VolumePrediction`` is one)."""

    mask: np.ndarray  # (S, 256, 256) uint8 0/1 in the Volume's display layout
    model_version: str


class ExportError(ValueError):
    """An output that cannot be made for this input (e.g. a DICOM SEG for a NIfTI patient)."""


def probability_nifti(volume: Volume, prediction: PredictedMask) -> bytes:
    """The tumour probability as ``.nii.gz`` bytes: float32 0-1 on the input's (FLAIR's) shape and affine.

    The U-Net's per-voxel probability before the threshold and the 3D rule (``Volume.probability_on_source_grid``:
    bilinear in-plane), so a voxel can read above 0.5 outside the mask where the rule removed its component.
    """
    import nibabel as nib

    probability = getattr(prediction, "probability", None)
    if probability is None:
        raise ExportError(f"{volume.name}: this prediction carries no probability map.")
    img = nib.Nifti1Image(volume.probability_on_source_grid(probability), volume.grid.affine)
    img.header.set_data_dtype(np.float32)
    img.header["descrip"] = f"lggdemo tumour probability {prediction.model_version}"[:79].encode()
    return gzip.compress(img.to_bytes(), compresslevel=6, mtime=0)


def mask_nifti(volume: Volume, prediction: PredictedMask) -> bytes:
    """The mask as ``.nii.gz`` bytes: the input's shape and affine, uint8 0/1.

    A Kaggle-layout input has no recorded geometry: its stand-in affine (``readers.kaggle.kaggle_affine``)
    carries the layout's true directions; without a voxel size from the user its 1 mm voxels are marked
    unknown (NIfTI spatial units "unknown", and said in the description).
    """
    import nibabel as nib

    data = volume.mask_on_source_grid(prediction.mask)
    img = nib.Nifti1Image(data, volume.grid.affine)
    img.header.set_data_dtype(np.uint8)
    descrip = f"lggdemo mask {prediction.model_version}"
    img.header.set_xyzt_units(xyz="mm" if volume.grid.affine_known else "unknown")
    if not volume.grid.affine_known:
        descrip += "; voxel size unknown (1 mm stand-in)"
    img.header["descrip"] = descrip[:79].encode()
    raw = img.to_bytes()
    return gzip.compress(raw, compresslevel=6, mtime=0)


#: Type 2 attributes (present, may be empty) that highdicom copies from the source into the SEG. Anonymisers
#: routinely drop or blank them; the SEG's copy of the source gets them empty, the source is left as it is.
SEG_TYPE2_FROM_SOURCE = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                         "ReferringPhysicianName", "StudyDate", "StudyTime")


def seg_source_copies(sources: Sequence[Any]) -> list[Any]:
    """Copies of the source instances for highdicom: without pixel data (a SEG needs only their geometry and
    identifiers), with missing Type 2 attributes present and empty. The originals are not changed."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset

    def empty(keyword: str) -> DataElement:  # a new element: setting a value in place would reach the source
        tag = tag_for_keyword(keyword)
        return DataElement(tag, dictionary_VR(tag), "")

    out = []
    for ds in sources:
        copy = Dataset()
        copy.file_meta = getattr(ds, "file_meta", Dataset())
        for element in ds:
            if element.keyword != "PixelData":
                copy.add(element)  # the element objects are shared and never modified
        for keyword in SEG_TYPE2_FROM_SOURCE:
            if keyword not in copy:
                copy.add(empty(keyword))
        if str(copy.get("PatientSex") or "") not in ("M", "F", "O", ""):  # highdicom accepts only these
            copy.add(empty("PatientSex"))
        out.append(copy)
    return out


def mask_dicom_seg(volume: Volume, prediction: PredictedMask) -> bytes:
    """A binary DICOM SEG referencing the source (FLAIR) series; ExportError for non-DICOM input or any source
    that highdicom cannot build a SEG from (the message says what it lacked)."""
    sources = volume.extra.get("dicom_sources")
    if volume.provenance.kind != "dicom" or not sources:
        raise ExportError(f"{volume.name}: a DICOM SEG needs DICOM input (this one is {volume.provenance.kind}); "
                          "use the NIfTI mask instead.")
    try:
        grid = volume.mask_on_source_grid(prediction.mask)  # (columns, rows, slices) in the sources' order
        frames = np.ascontiguousarray(np.transpose(grid, (2, 1, 0))).astype(bool)
        multiframe = frame_sources(list(sources))  # type: ignore[arg-type]
        if multiframe is not None:  # one Enhanced MR object: its frames in the object's order, not by position
            parent, index = multiframe
            in_order = np.zeros((int(parent.NumberOfFrames), *frames.shape[1:]), bool)
            in_order[index] = frames
            return _seg_bytes(prediction, seg_source_copies([parent]), in_order)
        return _seg_bytes(prediction, seg_source_copies(sources), frames)  # type: ignore[arg-type]
    except (VolumeError, ExportError):
        raise
    except Exception as exc:  # noqa: BLE001 -- highdicom validates with many kinds (AttributeError for a missing one)
        raise ExportError(f"{volume.name}: the DICOM SEG cannot be made from this series ({type(exc).__name__}: "
                          f"{exc}); the NIfTI mask is still available.") from exc


def _seg_bytes(prediction: PredictedMask, sources: Sequence[Any], frames: np.ndarray) -> bytes:
    """The SEG of ``frames`` (one per source instance, or per frame of one multi-frame source)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    algorithm = hd.AlgorithmIdentificationSequence(
        name="lggdemo U-Net (FLAIR abnormality)", family=codes.cid7162.ArtificialIntelligence,
        version=prediction.model_version, source="lggdemo")
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label=SEGMENT_LABEL,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm)
    seg = hd.seg.Segmentation(
        source_images=list(sources), pixel_array=frames, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description], series_instance_uid=generate_uid(), series_number=9901,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="lggdemo (teaching demo, not a medical device)",
        manufacturer_model_name="lggdemo", software_versions=f"lggdemo {__version__}; weights {prediction.model_version}",
        device_serial_number="none", series_description="lggdemo tumour mask", omit_empty_frames=False)
    buf = io.BytesIO()
    seg.save_as(buf)
    return buf.getvalue()


def mask_png_zip(volume: Volume, prediction: PredictedMask) -> bytes:
    """``<name>/<name>_<n>_mask.png`` for every slice (n from 1, inferior to superior as in the kaggle_3m
    layout, whatever the input), at the input's slice size and in-plane orientation before any turn the user chose."""
    from lggdemo.data.imageio import resize_mask

    stem = safe_name(volume.name)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, m in enumerate(prediction.mask, start=1):
            zf.writestr(f"{stem}/{stem}_{i}_mask.png", encode_png(resize_mask(m, volume.grid.plane_shape)))
    return buf.getvalue()


def safe_name(name: str) -> str:
    """A file-name stem from an input's name: letters, digits, ``._-`` only, never empty or hidden."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "patient"
    return cleaned[:120]


def mask_bytes(fmt: str, volume: Volume, prediction: PredictedMask) -> tuple[str, bytes]:
    """(file name, bytes) of the mask in one of ``FORMATS``, named after the input."""
    stem = safe_name(volume.name)
    if fmt == "nifti":
        return f"{stem}_mask.nii.gz", mask_nifti(volume, prediction)
    if fmt == "dicom-seg":
        return f"{stem}_seg.dcm", mask_dicom_seg(volume, prediction)
    if fmt == "png":
        return f"{stem}_masks.zip", mask_png_zip(volume, prediction)
    if fmt == "prob-nifti":
        return f"{stem}_prob.nii.gz", probability_nifti(volume, prediction)
    raise ExportError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")


def write_inside(out_dir: Path, file_name: str, data: bytes) -> Path:
    """Write ``data`` to ``out_dir/file_name`` (temp then rename); refuse a name that would leave the folder."""
    root = Path(out_dir).resolve()
    dest = (root / file_name).resolve()
    if dest.parent != root:
        raise VolumeError(f"{file_name!r} would be written outside {root}; refused.")
    atomic_write_bytes(dest, data)
    return dest
