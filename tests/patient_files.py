"""Whole-patient test data written BY the tests: a dataset patient saved as NIfTI (one file, three files) and as
a DICOM series with correct geometry, so every reader is checked against arrays known exactly.

The arrays come from a ``kaggle_3m`` patient (the real ones when ../shared is there, else the phantoms) and are
integers in 0..255, which every reader keeps as they are: reading back must give the same slices bit for bit.
"""

from __future__ import annotations

import io
import random
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lggdemo.data.kaggle import scan_dataset
from lggdemo.inference.grade import PatientGrade
from lggdemo.inference.wholepatient import VolumePrediction
from lggdemo.patient.readers.kaggle import index_volume
from lggdemo.patient.volume import ROLES, Volume, display_to_canonical

SPACING = (3.0, 0.8, 0.75)  # (slice, row, column) mm, deliberately anisotropic in-plane
ORIGIN_LPS = (-96.0, -110.0, 40.0)  # of the first (lowest: the display layout runs inferior to superior) slice's first pixel


def real_or_phantom_root(request: object, synthetic_root: Path) -> Path:
    """The real patients when ../shared has them (tests/conftest.py's ``real_root``), else the phantoms."""
    import pytest

    try:
        return request.getfixturevalue("real_root")  # type: ignore[attr-defined,no-any-return]
    except pytest.skip.Exception:
        return synthetic_root


def dataset_patient(root: Path, which: int = 0) -> Volume:
    index = scan_dataset(root)
    return index_volume(index, index.patient_ids[which % len(index.patient_ids)])


def canonical_affine(n_slices: int, spacing: tuple[float, float, float] = SPACING) -> np.ndarray:
    """RAS+ affine of display_to_canonical(slices): x runs left->right, y posterior->anterior, z inferior->superior."""
    ds, dr, dc = spacing
    affine = np.diag([dc, dr, ds, 1.0])
    affine[:3, 3] = (-100.0, -120.0, -60.0)
    return affine


def write_nifti_4d(path: Path, slices: np.ndarray, spacing: tuple[float, float, float] = SPACING,
                   axcodes: tuple[str, str, str] = ("L", "P", "S")) -> Path:
    """One (x, y, z, 3) file stored in ``axcodes`` orientation (not canonical, so the reader must reorient)."""
    import nibabel as nib
    from nibabel.orientations import axcodes2ornt, ornt_transform

    canon = display_to_canonical(slices)  # (x, y, z, 3)
    img = nib.Nifti1Image(canon, canonical_affine(len(slices), spacing))
    img = img.as_reoriented(ornt_transform(axcodes2ornt(("R", "A", "S")), axcodes2ornt(axcodes)))
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), img.affine), str(path))
    return path


def write_nifti_three(folder: Path, slices: np.ndarray, truth: np.ndarray | None = None,
                      spacing: tuple[float, float, float] = SPACING,
                      axcodes: tuple[str, str, str] = ("L", "P", "S")) -> dict[str, Path]:
    """flair / t1 / t1ce (.nii.gz) files, plus ``mask`` when truth is given; role -> path."""
    import nibabel as nib
    from nibabel.orientations import axcodes2ornt, ornt_transform

    folder.mkdir(parents=True, exist_ok=True)
    transform = ornt_transform(axcodes2ornt(("R", "A", "S")), axcodes2ornt(axcodes))
    out = {}
    arrays = {"t1": slices[..., 0], "flair": slices[..., 1], "t1ce": slices[..., 2]}
    if truth is not None:
        arrays["mask"] = truth.astype(np.uint8)
    for label, arr in arrays.items():
        img = nib.Nifti1Image(display_to_canonical(arr), canonical_affine(len(slices), spacing)).as_reoriented(transform)
        path = folder / f"patient_{label}.nii.gz"
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj), img.affine), str(path))
        out[label] = path
    return out


def dicom_series(slices_2d: np.ndarray, description: str, *, study_uid: str, for_uid: str,
                 spacing: tuple[float, float, float] = SPACING, orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
                 seed: int = 0, origin: tuple[float, float, float] = ORIGIN_LPS,
                 drop: tuple[str, ...] = ()) -> list[tuple[str, bytes]]:
    """(file name, bytes) of an MR series, one file per slice, in shuffled order with scrambled InstanceNumbers.

    Axial LPS geometry: columns run to the patient's left (+x), rows to posterior (+y), and slice s (inferior to
    superior) sits at z = origin_z + s * slice spacing: exactly the display layout of the Volume. ``drop``:
    attributes left out (an anonymised study).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    series_uid = generate_uid()
    ds_, dr, dc = spacing
    order = list(range(len(slices_2d)))
    random.Random(seed).shuffle(order)
    files = []
    row_cos, col_cos = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(row_cos, col_cos)
    for rank, s in enumerate(order):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        sop_uid = generate_uid()
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, sop_uid
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Phantom", "LGGTEST1", "19700101", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, for_uid
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20200101", "120000", "1", "A1"
        ds.ReferringPhysicianName = ""
        ds.Modality, ds.SeriesDescription, ds.SeriesNumber = "MR", description, 1 + ROLES_INDEX.get(description, 0)
        ds.InstanceNumber = rank + 1  # scrambled on purpose: the reader must order by position
        ds.Manufacturer = "test"
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        pos = np.asarray(origin, float) + s * ds_ * normal
        ds.ImagePositionPatient = [float(v) for v in pos]
        ds.PixelSpacing = [dr, dc]
        ds.SliceThickness = ds_
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = int(slices_2d.shape[1]), int(slices_2d.shape[2])
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = np.ascontiguousarray(slices_2d[s].astype(np.uint16)).tobytes()
        for keyword in drop:
            delattr(ds, keyword)
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        files.append((f"series_{description}/IM{rank:04d}.dcm", buf.getvalue()))
    return files


ROLES_INDEX = {"T1 pre": 0, "FLAIR": 1, "T1 post contrast": 2}


def dicom_study_zip(slices: np.ndarray, *, three: bool = True, **kw: object) -> bytes:
    """A zip of one study: FLAIR only, or T1 pre / FLAIR / T1 post series on one grid."""
    from pydicom.uid import generate_uid

    study_uid, for_uid = generate_uid(), generate_uid()
    names = list(ROLES_INDEX) if three else ["FLAIR"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for desc in names:
            for name, data in dicom_series(slices[..., ROLES_INDEX[desc]], desc, study_uid=study_uid, for_uid=for_uid,
                                           **kw):  # type: ignore[arg-type]
                zf.writestr(name, data)
        zf.writestr("README.txt", "not DICOM")
    return buf.getvalue()


def kaggle_zip(volume: Volume, with_masks: bool = True) -> bytes:
    from lggdemo.data.imageio import encode_png

    buf = io.BytesIO()
    pid = volume.name
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, sl in enumerate(volume.slices, start=1):
            zf.writestr(f"{pid}/{pid}_{i}.png", encode_png(sl))
            if with_masks and volume.truth is not None:
                zf.writestr(f"{pid}/{pid}_{i}_mask.png", encode_png(volume.truth[i - 1].astype(np.uint8)))
    return buf.getvalue()


def fake_prediction(volume: Volume, mask: np.ndarray) -> VolumePrediction:
    """A prediction carrying a chosen mask: exporters are checked against a mask known exactly."""
    voxels = int(mask.sum())
    return VolumePrediction(
        name=volume.name, mask=mask.astype(np.uint8), probability=mask.astype(np.float16), tumour_voxels=voxels,
        tumour_ml=None if volume.voxel_ml is None else voxels * volume.voxel_ml,
        tumour_slices=tuple(int(i) + 1 for i in np.flatnonzero(mask.reshape(len(mask), -1).any(1))),
        removed_voxels=0, dice=None, truth_voxels=None, grade=PatientGrade(float(np.log(0.3 / 0.7))), clinical=None,
        model_version="test-version", device="cpu", spacing=volume.spacing,
        brain_voxels=0)


def blob_mask(shape: tuple[int, int, int]) -> np.ndarray:
    """An asymmetric 3D blob, so a flipped or transposed mask cannot pass for the original."""
    s, h, w = shape
    zz, yy, xx = np.mgrid[0:s, 0:h, 0:w]
    blob = ((zz - s * 0.4) / max(s * 0.25, 1)) ** 2 + ((yy - h * 0.35) / 30) ** 2 + ((xx - w * 0.6) / 18) ** 2 < 1
    blob[:, 10:14, 200:230] = True  # a thin bar near one corner
    return blob.astype(np.uint8)


# --- studies in world coordinates (issue 22: sequences on their own grids, oblique axials) --------------

#: A structure at known world coordinates (LPS mm) inside an ellipsoidal head: what resampling must not move.
STRUCTURE_LPS = (12.0, -18.0, 9.0)
STRUCTURE_RADIUS = 14.0
HEAD_LEVEL, STRUCTURE_LEVEL = 400, 1600
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def phantom_field(lps: np.ndarray) -> np.ndarray:
    """Intensity at LPS points (..., 3): a head (an ellipsoid with a gentle gradient) holding a bright sphere."""
    x, y, z = lps[..., 0], lps[..., 1], lps[..., 2]
    head = (x / 70) ** 2 + (y / 85) ** 2 + (z / 60) ** 2 < 1
    sphere = np.linalg.norm(lps - np.asarray(STRUCTURE_LPS), axis=-1) < STRUCTURE_RADIUS
    value = np.where(head, HEAD_LEVEL + 40 * z / 60, 0)
    return np.where(sphere, STRUCTURE_LEVEL, value).round().astype(np.uint16)


def tilted_axial(deg: float) -> tuple[float, ...]:
    """ImageOrientationPatient of an axial series tilted ``deg`` about the left-right axis."""
    t = np.radians(deg)
    return (1.0, 0.0, 0.0, 0.0, float(np.cos(t)), float(-np.sin(t)))


def series_grid(shape: tuple[int, int, int], spacing: tuple[float, float, float], orientation: tuple[float, ...],
                centre: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(origin LPS of slice 0's first pixel, LPS centres (slices, rows, columns, 3)) of a series laid out as
    :func:`dicom_series` lays it (slice s at origin + s * spacing * normal), centred on ``centre``."""
    n, rows, cols = shape
    ds_, dr, dc = spacing
    row_cos, col_cos = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(row_cos, col_cos)
    origin = (np.asarray(centre, float) - (cols - 1) / 2 * dc * row_cos - (rows - 1) / 2 * dr * col_cos
              - (n - 1) / 2 * ds_ * normal)
    s, r, c = np.meshgrid(np.arange(n), np.arange(rows), np.arange(cols), indexing="ij")
    points = (origin + s[..., None] * (ds_ * normal) + r[..., None] * (dr * col_cos) + c[..., None] * (dc * row_cos))
    return origin, points


def world_series(description: str, *, shape: tuple[int, int, int], spacing: tuple[float, float, float],
                 study_uid: str, for_uid: str, orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
                 centre: tuple[float, float, float] = (0.0, 0.0, 0.0), drop: tuple[str, ...] = (),
                 seed: int = 0) -> list[tuple[str, bytes]]:
    """An MR series of :func:`phantom_field` on its own grid: ``shape`` (slices, rows, columns), ``spacing`` (slice,
    row, column) mm, ``orientation`` (ImageOrientationPatient), centred on ``centre`` (LPS mm)."""
    origin, points = series_grid(shape, spacing, orientation, centre)
    return dicom_series(phantom_field(points), description, study_uid=study_uid, for_uid=for_uid, spacing=spacing,
                        orientation=orientation, origin=tuple(origin), drop=drop, seed=seed)


def zipped(files: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files:
            zf.writestr(name, data)
    return buf.getvalue()


def voxel_lps(affine_ras: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """LPS centres (i, j, k, 3) of the voxels of a RAS+ affine's grid (a NIfTI's, or a Volume's source grid)."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(float)
    ras = ijk @ np.asarray(affine_ras, float)[:3, :3].T + np.asarray(affine_ras, float)[:3, 3]
    return ras * np.array([-1.0, -1.0, 1.0])


def structure_voxels(affine_ras: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Voxels of a grid whose centres lie inside the structure: where it must land."""
    return np.linalg.norm(voxel_lps(affine_ras, shape) - np.asarray(STRUCTURE_LPS), axis=-1) < STRUCTURE_RADIUS


FLAIR = {"shape": (40, 256, 256), "spacing": (0.9, 0.9, 0.9)}  # (slices, rows, columns)
T1_COARSE = {"shape": (20, 128, 128), "spacing": (1.8, 1.8, 1.8)}
T1_THICK = {"shape": (7, 256, 256), "spacing": (6.0, 0.9, 0.9)}
CENTRE = (0.0, 0.0, 9.0)  # LPS mm: the structure's height, so every grid holds it


@dataclass(frozen=True)
class Study:
    files: list[tuple[str, bytes]]
    flair_affine: np.ndarray  # RAS+ affine the reader must find for FLAIR's (column, row, slice) array
    flair_shape: tuple[int, int, int]


def make_study(flair_orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0), t1: dict | None = None,
               t1_centre: tuple[float, float, float] = CENTRE, t1_orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
               drop: tuple[str, ...] = ()) -> Study:
    from pydicom.uid import generate_uid

    study, frame = generate_uid(), generate_uid()
    files = world_series("FLAIR", **FLAIR, orientation=flair_orientation, centre=CENTRE, study_uid=study,
                         for_uid=frame, drop=drop)
    if t1 is not None:
        for description in ("T1 pre", "T1 post contrast"):
            files += world_series(description, **t1, orientation=t1_orientation, centre=t1_centre, study_uid=study,
                                  for_uid=frame, drop=drop, seed=1)
    n, rows, cols = FLAIR["shape"]
    ds_, dr, dc = FLAIR["spacing"]
    origin, _ = series_grid(FLAIR["shape"], FLAIR["spacing"], flair_orientation, CENTRE)
    row_cos, col_cos = np.asarray(flair_orientation[:3], float), np.asarray(flair_orientation[3:], float)
    normal = np.cross(row_cos, col_cos)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2] = row_cos * dc, col_cos * dr, normal * ds_
    lps[:3, 3] = origin  # slice 0 is the lowest position along the normal, where the reader starts
    return Study(files, LPS_TO_RAS @ lps, (cols, rows, n))


def channel_structure(vol: Volume, channel: int) -> np.ndarray:
    """The bright structure of one channel, on the source (FLAIR) grid: voxels nearer the structure's level than
    the head's (both levels read from the channel itself, so the per-volume window does not matter)."""
    expected = structure_voxels(vol.grid.affine, vol.grid.shape)
    display = vol.slices[..., channel].astype(float)
    inside = display[vol_display(vol, expected)]
    head = display[vol_display(vol, ~expected) & (display > 0)]
    threshold = (np.median(inside) + np.median(head)) / 2
    return vol.mask_on_source_grid((display > threshold).astype(np.uint8)).astype(bool)


def vol_display(vol: Volume, on_grid: np.ndarray) -> np.ndarray:
    """A source-grid boolean array in the volume's display layout (FLAIR is 256² in-plane: no resize)."""
    from lggdemo.patient.volume import canonical_to_display, to_canonical

    canon, _, _ = to_canonical(on_grid.astype(np.uint8), vol.grid.affine)
    return canonical_to_display(canon).astype(bool)


def enhanced_object(files: list[tuple[str, bytes]], description: str, shuffle: bool = True) -> tuple[str, bytes]:
    """The series ``description`` of ``files`` as one Legacy Converted Enhanced MR object (highdicom), its frames
    in scrambled order so that the reader must place them by their per-frame positions."""
    import highdicom as hd
    import pydicom
    from pydicom.uid import generate_uid

    dss = [pydicom.dcmread(io.BytesIO(d)) for n, d in files if n.startswith(f"series_{description}/")]
    if shuffle:
        dss = dss[1::2] + dss[0::2]
    obj = hd.legacy.LegacyConvertedEnhancedMRImage(dss, series_instance_uid=generate_uid(), series_number=7,
                                                   sop_instance_uid=generate_uid(), instance_number=1)
    buf = io.BytesIO()
    obj.save_as(buf)
    return f"enhanced_{description}.dcm", buf.getvalue()


__all__ = ["ROLES", "SPACING"]
