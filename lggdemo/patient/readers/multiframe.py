"""Multi-frame DICOM images (Enhanced MR, Legacy Converted Enhanced MR): one object holds a whole series.

Such an object keeps each frame's position, orientation, pixel spacing and rescale in its functional groups
(per-frame, or shared by all frames), not in the top-level image-plane module. :func:`frame_views` turns it
into one single-frame view per frame -- a small pydicom Dataset carrying exactly what a classic MR image
carries, with that frame's pixels -- so ordering, geometry, resampling and decoding are the classic series'
code. Each view remembers its object and frame number (:data:`FRAME_SOURCE`) so that a DICOM SEG can
reference the object frame by frame. A multi-frame object without functional groups (a multi-frame
Secondary Capture, say) has no per-frame geometry: :func:`multiframe_kind` names its SOP class for the refusal.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lggdemo.patient.volume import VolumeError

#: Python attribute of a frame view: (the multi-frame Dataset, 0-based frame index).
FRAME_SOURCE = "lgg_frame_source"
#: Top-level attributes every frame view copies from its object (identity, pixel description).
_COPIED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID",
           "SeriesDescription", "SeriesNumber", "Modality", "PatientID", "PatientName", "SamplesPerPixel",
           "PhotometricInterpretation", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation")


def multiframe_kind(ds: Any) -> str | None:
    """The SOP class (name and UID) of a multi-frame image object, or None for a single-frame one."""
    from pydicom.uid import UID

    frames = getattr(ds, "NumberOfFrames", None)
    try:
        many = frames is not None and int(frames) > 1
    except (TypeError, ValueError):
        many = False
    if not many and "PerFrameFunctionalGroupsSequence" not in ds:
        return None
    sop = UID(str(getattr(ds, "SOPClassUID", "")))
    return f"{sop.name}, {sop}" if sop.name != str(sop) else f"SOP class {sop}"


def has_functional_groups(ds: Any) -> bool:
    return "PerFrameFunctionalGroupsSequence" in ds and len(ds.PerFrameFunctionalGroupsSequence) > 0


def _group(frame: Any, shared: Any, keyword: str) -> Any:
    """A functional group's single item: the frame's own, else the shared one, else None."""
    for holder in (frame, shared):
        if holder is not None and keyword in holder and len(holder[keyword].value):
            return holder[keyword].value[0]
    return None


def frame_views(ds: Any, member: str) -> list[Any]:
    """One single-frame view per frame of a multi-frame image with functional groups; VolumeError naming
    ``member`` when a frame lacks its geometry or the pixel data cannot be decoded."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    kind = multiframe_kind(ds) or "multi-frame"
    per_frame = ds.PerFrameFunctionalGroupsSequence
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds and \
        len(ds.SharedFunctionalGroupsSequence) else None
    n = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if len(per_frame) != n:
        raise VolumeError(f"{member} ({kind}): {len(per_frame)} per-frame functional groups for {n} frames.")
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 -- pydicom raises many kinds for compressed/corrupt data
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        how = f" ({syntax.name})" if syntax is not None else ""
        raise VolumeError(f"the pixel data of {member}{how} cannot be decoded ({exc}).") from exc
    pixels = pixels.reshape((n, *pixels.shape[-2:])) if pixels.ndim == 2 else pixels
    if pixels.ndim != 3:
        raise VolumeError(f"{member} ({kind}): colour frames are not taken (pixel shape {pixels.shape}).")
    views = []
    for i, frame in enumerate(per_frame):
        position = _group(frame, shared, "PlanePositionSequence")
        orientation = _group(frame, shared, "PlaneOrientationSequence")
        measures = _group(frame, shared, "PixelMeasuresSequence")
        if position is None or orientation is None or measures is None or "PixelSpacing" not in measures:
            raise VolumeError(f"{member} ({kind}): frame {i + 1} has no plane position, orientation or pixel "
                              "spacing in its functional groups, so it cannot be placed in space.")
        view = Dataset()
        view.file_meta = FileMetaDataset()
        view.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        for keyword in _COPIED:
            if keyword in ds:
                setattr(view, keyword, ds[keyword].value)
        view.Rows, view.Columns = int(ds.Rows), int(ds.Columns)
        view.ImagePositionPatient = position.ImagePositionPatient
        view.ImageOrientationPatient = orientation.ImageOrientationPatient
        view.PixelSpacing = measures.PixelSpacing
        rescale = _group(frame, shared, "PixelValueTransformationSequence")
        if rescale is not None and "RescaleSlope" in rescale:
            view.RescaleSlope, view.RescaleIntercept = rescale.RescaleSlope, rescale.RescaleIntercept
        view.PixelData = np.ascontiguousarray(pixels[i]).tobytes()
        view.filename = f"{member} (frame {i + 1})"
        setattr(view, FRAME_SOURCE, (ds, i))
        views.append(view)
    return views


def frame_sources(sources: list[Any]) -> tuple[Any, list[int]] | None:
    """(the multi-frame object, the frame index of each view) when ``sources`` are views of one object; None
    for classic single-frame instances. VolumeError for a mix (a SEG references one kind or the other)."""
    origins = [getattr(ds, FRAME_SOURCE, None) for ds in sources]
    if all(o is None for o in origins):
        return None
    if any(o is None for o in origins) or len({id(o[0]) for o in origins}) != 1:  # type: ignore[index]
        raise VolumeError("the series mixes frames of a multi-frame object with other instances.")
    return origins[0][0], [int(o[1]) for o in origins]  # type: ignore[index]
