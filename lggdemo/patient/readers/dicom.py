"""DICOM patients (a ``.zip`` of one study, or a folder, via pydicom).

Instances are grouped by SeriesInstanceUID; a series counts as an image series when its instances carry
pixel data and the image-plane module (ImagePositionPatient, ImageOrientationPatient, PixelSpacing). Each
series is ordered by ImagePositionPatient projected on the slice normal (the cross product of the two
ImageOrientationPatient cosines), never by InstanceNumber, which scanners number freely. The slice
spacing comes from those positions, the in-plane spacing from PixelSpacing.

Only axial series are read: a sagittal or coronal DICOM series is refused with a message (reformatting it
needs interpolation this demo does not do). The sequences of one patient must share one grid.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from lggdemo.patient.readers.assemble import assemble
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


def _is_image(ds: object) -> bool:
    return all(hasattr(ds, a) for a in ("PixelData", "ImagePositionPatient", "ImageOrientationPatient",
                                        "PixelSpacing", "Rows", "Columns"))


def scan_dicom_files(files: Sequence[tuple[str, bytes]], name: str) -> DicomStudy:
    """Parse every member that is DICOM; group image instances by series. VolumeError when none is an image."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    series: dict[str, list[object]] = {}
    skipped = 0
    other = 0
    for member, data in files:
        if member.upper().endswith("DICOMDIR"):
            continue
        try:
            ds = pydicom.dcmread(io.BytesIO(data))
        except (InvalidDicomError, OSError, ValueError, EOFError, AttributeError, KeyError, TypeError):
            skipped += 1
            continue
        if not _is_image(ds) or "SeriesInstanceUID" not in ds:
            other += 1
            continue
        series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    if not series:
        raise VolumeError(f"{name}: no DICOM image series found ({len(files)} files: {skipped} not DICOM, {other} "
                          "DICOM without image geometry such as reports or SEG objects).")
    notes = []
    if skipped:
        notes.append(f"{skipped} file(s) that are not DICOM were ignored.")
    infos = []
    for uid, items in series.items():
        first = items[0]
        infos.append(SeriesInfo(uid, str(getattr(first, "SeriesDescription", "")), str(getattr(first, "Modality", "")),
                                len(items), int(first.Rows), int(first.Columns)))
    return DicomStudy(name, series, infos, notes)


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


def series_geometry(datasets: Sequence[object], what: str) -> _Geometry:
    """Order one series' instances and build its affine; refuse inconsistent or non-axial series."""
    first = datasets[0]
    iop = np.asarray([float(v) for v in first.ImageOrientationPatient])  # type: ignore[attr-defined]
    row_cos, col_cos = iop[:3], iop[3:]
    normal = np.cross(row_cos, col_cos)
    main = int(np.argmax(np.abs(normal)))
    if main != 2:
        raise VolumeError(f"{what}: the slices are {_LPS_AXES[main].split(' ')[-1].strip('()')} (slice normal "
                          f"{np.round(normal, 2).tolist()}); only axial series are read. Export an axial series or "
                          "reformat it to axial first.")
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
    """(columns, rows, slices) array of modality values (rescale slope/intercept applied): int32 when integral."""
    from pydicom.pixels import apply_modality_lut

    out = np.empty(geom.shape, np.float32)
    for k, ds in enumerate(geom.datasets):
        try:
            arr = apply_modality_lut(ds.pixel_array, ds)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 -- pydicom raises many kinds for compressed/corrupt data
            raise VolumeError(f"{what}: pixel data of image {k + 1} cannot be decoded ({exc}).") from exc
        if arr.ndim != 2:
            raise VolumeError(f"{what}: multi-frame or colour images are not taken (image shape {arr.shape}).")
        out[:, :, k] = arr.T
    if np.array_equal(out, np.round(out)) and np.abs(out).max(initial=0) < 2**31:
        return out.astype(np.int32)  # integer modality values stay integers (8-bit data is then kept as it is)
    return out


def dicom_volume(study: DicomStudy, assignment: Mapping[str, int | None] | None = None) -> Volume:
    """One patient from a scanned study; ``assignment`` maps roles to indices into ``study.infos``."""
    roles = dict(assignment) if assignment is not None else guess_series_roles(study)
    if roles.get("FLAIR") is None:
        raise VolumeError(f"{study.name}: no series is assigned to FLAIR; the models need at least FLAIR.")
    used = [i for i in roles.values() if i is not None]
    if len(used) != len(set(used)):
        raise VolumeError(f"{study.name}: one series is assigned to two roles.")
    geoms: dict[str, _Geometry] = {}
    for role in ROLES:
        idx = roles.get(role)
        if idx is None:
            continue
        info = study.infos[idx]
        geoms[role] = series_geometry(study.series[info.uid], f"{study.name} / series '{info.description}'")
    ref = geoms["FLAIR"]
    for role, g in geoms.items():
        if g.shape != ref.shape or not np.allclose(g.affine, ref.affine, atol=1e-3) or \
                not np.allclose(g.positions, ref.positions, atol=GRID_TOL_MM):
            raise VolumeError(f"{study.name}: the {role} series and the FLAIR series do not share one grid (size, "
                              "orientation or slice positions differ): they cannot be aligned voxel by voxel. "
                              "Register and resample them first.")
    channels = {role: (_pixels(geoms[role], f"{study.name} / {role}") if role in geoms else None) for role in ROLES}
    uids = [study.infos[roles[r]].uid if roles.get(r) is not None else "" for r in ROLES]
    notes = list(study.notes) + [n for g in geoms.values() for n in g.notes]
    notes += [f"{role}: series '{study.infos[roles[role]].description}'" for role in ROLES if roles.get(role) is not None]
    return assemble(channels, ref.affine, name=study.name, kind="dicom", files=[study.name], series_uids=uids,
                    notes=notes, extra={"dicom_sources": ref.datasets})
