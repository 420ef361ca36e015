"""DICOM patients (a ``.zip`` of one study, or a folder, via pydicom).

Instances are grouped by SeriesInstanceUID; a series counts as an image series when its instances carry
pixel data and the image-plane module (ImagePositionPatient, ImageOrientationPatient, PixelSpacing). Each
series is ordered by ImagePositionPatient projected on the slice normal (the cross product of the two
ImageOrientationPatient cosines), never by InstanceNumber, which scanners number freely. The slice
spacing comes from those positions, the in-plane spacing from PixelSpacing; the affine keeps the true
(possibly oblique) orientation, so every output lands where the scanner put the images.

FLAIR is the reference grid and must be axial: its slice normal within ``AXIAL_MAX_TILT_DEG`` of the
head-foot axis (clinical axials are tilted a few degrees); sagittal and coronal FLAIR series are refused.
The other sequences may lie on any grid and in any orientation: they are resampled onto FLAIR's
(:mod:`lggdemo.patient.readers.resample`). Pixel data is decoded by pydicom's plugins (see requirements.txt for the
compressed syntaxes), with the modality LUT (RescaleSlope/Intercept) applied and MONOCHROME1 inverted.
Multi-frame objects (Enhanced MR) are read frame by frame through their functional groups
(:mod:`lggdemo.patient.readers.multiframe`), or refused with their SOP class named; damaged files are named.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from lggdemo.patient.readers.assemble import assemble
from lggdemo.patient.readers.multiframe import frame_views, has_functional_groups, multiframe_kind
from lggdemo.patient.readers.resample import resample_onto, same_grid
from lggdemo.patient.volume import MAX_SLICES, MAX_VOXEL_BYTES, ROLES, Volume, VolumeError

#: The patient's axes in DICOM's LPS frame; index 2 (superior) must be the slice normal's main axis.
_LPS_AXES = ("left-right (sagittal)", "anterior-posterior (coronal)", "superior-inferior (axial)")
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_ROLE_PATTERNS = (
    ("FLAIR", re.compile(r"flair", re.I)),
    ("post-contrast", re.compile(r"post|\+c|gad|gd|contrast|t1c|mprage.*c", re.I)),
    ("pre-contrast", re.compile(r"t1|pre", re.I)),
)
#: Position tolerance (mm) when comparing the slice positions of two sequences.
GRID_TOL_MM = 0.01
#: A FLAIR series whose slice normal is within this angle of the head-foot axis is read as axial.
AXIAL_MAX_TILT_DEG = 20.0


@dataclass(frozen=True)
class SeriesInfo:
    uid: str
    description: str
    modality: str
    n_instances: int
    rows: int
    columns: int

    @property
    def label(self) -> str:
        return f"{self.description or '(no description)'} — {self.modality}, {self.n_instances} images, " \
               f"{self.columns}×{self.rows} (…{self.uid[-8:]})"


@dataclass
class DicomStudy:
    """Image series found in one upload, instances grouped but not yet ordered or decoded."""

    name: str
    series: dict[str, list[object]]  # SeriesInstanceUID -> pydicom Datasets
    infos: list[SeriesInfo]
    notes: list[str] = field(default_factory=list)
    unused: list[tuple[str, str]] = field(default_factory=list)  # (file, why it was not read)
    patient_id: str = ""  # the first PatientID found: what outputs are named after when the upload has no name


def _is_image(ds: object) -> bool:
    return all(hasattr(ds, a) for a in ("PixelData", "ImagePositionPatient", "ImageOrientationPatient",
                                        "PixelSpacing", "Rows", "Columns"))


def has_dicom_prefix(data: bytes) -> bool:
    """The Part 10 preamble's ``DICM`` marker: the file claims to be DICOM."""
    return len(data) > 132 and data[128:132] == b"DICM"


def damaged_image(ds: object) -> str | None:
    """Why an instance that parsed is still damaged, or None: pydicom stops quietly at the end of a cut file.

    An image SOP class without pixel data was cut before it; uncompressed pixel data shorter than Rows x
    Columns x samples x frames says was cut inside it. Compressed data is checked when it is decoded.
    """
    from pydicom.uid import UID

    sop = str(getattr(ds, "SOPClassUID", "") or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", ""))
    if not sop:  # Type 1 in every object and in the file meta: only a file cut inside its first bytes lacks it
        return "no SOP Class UID anywhere (the file is cut short)."
    is_image_class = "Image Storage" in UID(sop).name
    if "PixelData" not in ds:  # type: ignore[operator]
        return "an image without its pixel data (the file is cut short)." if is_image_class else None
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or UID(str(syntax)).is_compressed:
        return None
    try:
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        need = int(ds.Rows) * int(ds.Columns) * int(getattr(ds, "SamplesPerPixel", 1)) * frames  # type: ignore[attr-defined]
        need = need * int(ds.BitsAllocated) // 8  # type: ignore[attr-defined]
    except (AttributeError, TypeError, ValueError):
        return None  # not enough header to tell; decoding will say
    held = len(ds.PixelData)  # type: ignore[attr-defined]
    if held < need:
        return f"{held} bytes of pixel data where its header says {need} (the file is cut short)."
    return None


def scan_dicom_files(files: Sequence[tuple[str, bytes]], name: str) -> DicomStudy:
    """Parse every member that is DICOM; group image instances by series. VolumeError when none is an image."""
    import pydicom

    series: dict[str, list[object]] = {}
    multiframe: list[str] = []  # refused: no per-frame geometry
    read_frames: list[str] = []  # read frame by frame from the functional groups
    skipped = 0
    other = 0
    unused: list[tuple[str, str]] = []
    patient_id = ""
    for member, data in files:
        if member.upper().endswith("DICOMDIR"):
            unused.append((member, "a DICOMDIR index: the images are read from their own files"))
            continue
        try:
            ds = pydicom.dcmread(io.BytesIO(data))
        except Exception as exc:  # noqa: BLE001 -- pydicom raises many kinds (struct.error too) for a damaged file
            if has_dicom_prefix(data):  # it says it is DICOM: damaged, and a series missing it would be wrong
                raise VolumeError(f"{name}: {member} is a damaged DICOM file ({type(exc).__name__}: {exc}).") from exc
            skipped += 1
            unused.append((member, "not a DICOM file"))
            continue
        ds.filename = member  # so that a later error (pixel data) can name the file
        damage = damaged_image(ds)
        if damage:
            raise VolumeError(f"{name}: {member} is a damaged DICOM file: {damage}")
        patient_id = patient_id or str(getattr(ds, "PatientID", "") or "").strip()
        kind = multiframe_kind(ds)
        if kind and has_functional_groups(ds) and "SeriesInstanceUID" in ds:
            views = frame_views(ds, f"{name}: {member}")
            series.setdefault(str(ds.SeriesInstanceUID), []).extend(views)
            read_frames.append(f"{member} ({kind}, {len(views)} frames)")
            continue
        if kind:
            multiframe.append(f"{member} ({kind})")
            unused.append((member, f"a multi-frame {kind} without per-frame positions"))
            continue
        if not _is_image(ds) or "SeriesInstanceUID" not in ds:
            other += 1
            unused.append((member, "DICOM without image geometry (a report, a SEG or another non-image object)"))
            continue
        series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    refused = (f"multi-frame objects without per-frame functional groups (no position per frame) are not read: "
               f"{', '.join(multiframe[:3])}{'…' if len(multiframe) > 3 else ''}. Export the series as Enhanced MR or "
               "as classic single-frame MR images (one file per slice) instead.")
    if not series:
        raise VolumeError(f"{name}: no DICOM image series found ({len(files)} files: {skipped} not DICOM, {other} "
                          "DICOM without image geometry such as reports or SEG objects"
                          + (f"); {refused}" if multiframe else ")."))
    notes = []
    if skipped:
        notes.append(f"{skipped} file(s) that are not DICOM were ignored.")
    if multiframe:
        notes.append(f"{len(multiframe)} file(s) ignored: {refused}")
    notes += [f"Multi-frame {m}: read frame by frame (position, orientation, spacing and rescale from its "
              "functional groups)." for m in read_frames]
    infos = []
    for uid, items in series.items():
        first = items[0]
        infos.append(SeriesInfo(uid, str(getattr(first, "SeriesDescription", "")), str(getattr(first, "Modality", "")),
                                len(items), int(first.Rows), int(first.Columns)))
    return DicomStudy(name, series, infos, notes, unused, patient_id)


def guess_series_roles(study: DicomStudy) -> dict[str, int | None]:
    """Role -> index into ``study.infos`` from the series descriptions; a lone series is FLAIR."""
    roles: dict[str, int | None] = {r: None for r in ROLES}
    for i, info in enumerate(study.infos):
        for role, pattern in _ROLE_PATTERNS:
            if pattern.search(info.description) and roles[role] is None:
                roles[role] = i
                break
    if roles["FLAIR"] is None:
        used = {v for v in roles.values() if v is not None}
        free = [i for i in range(len(study.infos)) if i not in used]
        if free:
            roles["FLAIR"] = free[0]
    return roles


@dataclass(frozen=True)
class _Geometry:
    datasets: list[object]  # ordered by position along the normal, ascending
    affine: np.ndarray  # RAS+ affine of the (column, row, slice) array
    positions: np.ndarray  # (S,) projections on the normal
    shape: tuple[int, int, int]
    notes: tuple[str, ...]


def slice_tilt_deg(normal: np.ndarray) -> float:
    """Angle (degrees) between a slice normal and the head-foot axis: 0 for a true axial, 90 for sagittal/coronal."""
    n = np.asarray(normal, float)
    return float(np.degrees(np.arccos(min(1.0, abs(n[2]) / max(float(np.linalg.norm(n)), 1e-12)))))


def series_geometry(datasets: Sequence[object], what: str, *, reference: bool = True) -> _Geometry:
    """Order one series' instances and build its affine; refuse inconsistent series, and a reference (FLAIR)
    series that is not axial within ``AXIAL_MAX_TILT_DEG``."""
    first = datasets[0]
    iop = np.asarray([float(v) for v in first.ImageOrientationPatient])  # type: ignore[attr-defined]
    row_cos, col_cos = iop[:3], iop[3:]
    normal = np.cross(row_cos, col_cos)
    main = int(np.argmax(np.abs(normal)))
    tilt = slice_tilt_deg(normal)
    if reference and tilt > AXIAL_MAX_TILT_DEG:
        if main != 2:
            raise VolumeError(f"{what}: the slices are {_LPS_AXES[main].split(' ')[-1].strip('()')} (slice normal "
                              f"{np.round(normal, 2).tolist()}); only axial series are read as FLAIR, the grid every "
                              "output is written on. Export an axial FLAIR series or reformat it to axial first.")
        raise VolumeError(f"{what}: the slices are tilted {tilt:.0f}° from axial (more than {AXIAL_MAX_TILT_DEG:.0f}°); "
                          "only axial series are read as FLAIR. Reformat it to axial first.")
    rows, cols = int(first.Rows), int(first.Columns)  # type: ignore[attr-defined]
    spacing = [float(v) for v in first.PixelSpacing]  # type: ignore[attr-defined]  # (between rows, between columns)
    for ds in datasets:
        if (int(ds.Rows), int(ds.Columns)) != (rows, cols):  # type: ignore[attr-defined]
            raise VolumeError(f"{what}: images of different sizes in one series.")
        if not np.allclose([float(v) for v in ds.ImageOrientationPatient], iop, atol=1e-4):  # type: ignore[attr-defined]
            raise VolumeError(f"{what}: images with different orientations in one series.")
    if len(datasets) > MAX_SLICES:
        raise VolumeError(f"{what}: {len(datasets)} slices; more than {MAX_SLICES} are refused.")
    if len(datasets) < 2:
        raise VolumeError(f"{what}: a single image is a 2D slice, not a volume; use the 'Slices' mode.")
    if len(datasets) * rows * cols * 4 > MAX_VOXEL_BYTES:
        raise VolumeError(f"{what}: {len(datasets)} × {rows} × {cols} voxels is more than this demo takes.")
    positions = np.asarray([np.dot([float(v) for v in ds.ImagePositionPatient], normal) for ds in datasets])  # type: ignore[attr-defined]
    order = np.argsort(positions, kind="stable")
    ordered = [datasets[i] for i in order]
    pos = positions[order]
    steps = np.diff(pos)
    if (steps < 1e-3).any():
        raise VolumeError(f"{what}: several images share one slice position (several echoes, time points or a "
                          "repeated series); upload one 3D series per sequence.")
    step = float(np.median(steps))
    notes = []
    if steps.max() - steps.min() > 0.01 * step + 1e-3:
        notes.append(f"{what}: uneven slice spacing ({steps.min():.2f}–{steps.max():.2f} mm); the median {step:.2f} mm "
                     "is used for volumes and the NIfTI affine.")
    origin = np.asarray([float(v) for v in ordered[0].ImagePositionPatient])  # type: ignore[attr-defined]
    lps = np.eye(4)
    lps[:3, 0] = row_cos * spacing[1]  # column index i runs along the row cosine
    lps[:3, 1] = col_cos * spacing[0]  # row index j along the column cosine
    lps[:3, 2] = normal * step
    lps[:3, 3] = origin
    return _Geometry(ordered, _LPS_TO_RAS @ lps, pos, (cols, rows, len(ordered)), tuple(notes))


def _pixels(geom: _Geometry, what: str) -> np.ndarray:
    """(columns, rows, slices) array of modality values (rescale slope/intercept applied, MONOCHROME1 inverted so
    that brighter is higher, as in MONOCHROME2): int32 when integral."""
    from pydicom.pixels import apply_modality_lut

    out = np.empty(geom.shape, np.float32)
    for k, ds in enumerate(geom.datasets):
        try:
            arr = apply_modality_lut(ds.pixel_array, ds)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 -- pydicom raises many kinds for compressed/corrupt data
            syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
            how = f" ({syntax.name})" if syntax is not None else ""
            member = getattr(ds, "filename", None) or f"image {k + 1}"
            raise VolumeError(f"{what}: the pixel data of {member}{how} cannot be decoded ({exc}).") from exc
        if arr.ndim != 2:
            raise VolumeError(f"{what}: multi-frame or colour images are not taken (image shape {arr.shape}).")
        if str(getattr(ds, "PhotometricInterpretation", "")).strip() == "MONOCHROME1":
            arr = -np.asarray(arr, np.float32)  # the per-volume window makes the offset irrelevant
        out[:, :, k] = arr.T
    if np.array_equal(out, np.round(out)) and np.abs(out).max(initial=0) < 2**31:
        return out.astype(np.int32)  # integer modality values stay integers (8-bit data is then kept as it is)
    return out


def dicom_volume(study: DicomStudy, assignment: Mapping[str, int | None] | None = None) -> Volume:
    """One patient from a scanned study; ``assignment`` maps roles to indices into ``study.infos``.

    FLAIR's grid is the volume's; a sequence on another grid is resampled onto it (a note says from what).
    """
    roles = dict(assignment) if assignment is not None else guess_series_roles(study)
    if roles.get("FLAIR") is None:
        raise VolumeError(f"{study.name}: no series is assigned to FLAIR; the models need at least FLAIR.")
    used = [i for i in roles.values() if i is not None]
    if len(used) != len(set(used)):
        raise VolumeError(f"{study.name}: one series is assigned to two roles.")
    geoms: dict[str, _Geometry] = {}
    labels: dict[str, str] = {}
    for role in ("FLAIR", *[r for r in ROLES if r != "FLAIR"]):  # FLAIR first: a refusal of it comes first
        idx = roles.get(role)
        if idx is None:
            continue
        info = study.infos[idx]
        labels[role] = f"{role} series '{info.description}'"
        geoms[role] = series_geometry(study.series[info.uid], f"{study.name} / series '{info.description}'",
                                      reference=role == "FLAIR")
    ref = geoms["FLAIR"]
    notes = list(study.notes) + [n for g in geoms.values() for n in g.notes]
    flair_frame = str(getattr(ref.datasets[0], "FrameOfReferenceUID", ""))
    channels: dict[str, np.ndarray | None] = {}
    for role in ROLES:
        g = geoms.get(role)
        if g is None:
            channels[role] = None
            continue
        arr = _pixels(g, f"{study.name} / {role}")
        if role != "FLAIR" and not (same_grid(g.shape, g.affine, ref.shape, ref.affine)
                                    and np.allclose(g.positions, ref.positions, atol=GRID_TOL_MM)):
            frame = str(getattr(g.datasets[0], "FrameOfReferenceUID", ""))
            if frame and flair_frame and frame != flair_frame:
                notes.append(f"The {labels[role]} has another frame of reference than FLAIR: its coordinates are "
                             "trusted as they are (no registration), so check the alignment on the slices.")
            moved = resample_onto(arr, g.affine, ref.shape, ref.affine, what=f"{study.name}: the {labels[role]}")
            notes.append(moved.note)
            arr = moved.data
        channels[role] = arr
    uids = [study.infos[roles[r]].uid if roles.get(r) is not None else "" for r in ROLES]
    notes += [f"{role}: series '{study.infos[roles[role]].description}'" for role in ROLES if roles.get(role) is not None]
    return assemble(channels, ref.affine, name=study.name, kind="dicom", files=[study.name], series_uids=uids,
                    notes=notes, extra={"dicom_sources": ref.datasets})
