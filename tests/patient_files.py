"""Whole-patient test data written BY the tests: a dataset patient saved as NIfTI (one file, three files) and as
a DICOM series with correct geometry, so every reader is checked against arrays known exactly.

The arrays come from a ``kaggle_3m`` patient (the real ones when ../shared is there, else the phantoms) and are
integers in 0..255, which every reader keeps as they are: reading back must give the same slices bit for bit.
"""

from __future__ import annotations

import io
import random
import zipfile
from pathlib import Path

import numpy as np

from lggdemo.data.kaggle import scan_dataset
from lggdemo.inference.grade import PatientGrade
from lggdemo.inference.wholepatient import VolumePrediction
from lggdemo.patient.readers.kaggle import index_volume
from lggdemo.patient.volume import ROLES, Volume, display_to_canonical

SPACING = (3.0, 0.8, 0.75)  # (slice, row, column) mm, deliberately anisotropic in-plane
ORIGIN_LPS = (-96.0, -110.0, 40.0)  # of the first (head) slice's first pixel


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
    """RAS+ affine of display_to_canonical(slices): x runs left->right, y posterior->anterior, z foot->head."""
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
                 seed: int = 0) -> list[tuple[str, bytes]]:
    """(file name, bytes) of an MR series, one file per slice, in shuffled order with scrambled InstanceNumbers.

    Axial LPS geometry: columns run to the patient's left (+x), rows to posterior (+y), and slice s (head to
    foot) sits at z = origin_z - s * slice spacing: exactly the display layout of the Volume.
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
        pos = np.asarray(ORIGIN_LPS) - s * ds_ * normal
        ds.ImagePositionPatient = [float(v) for v in pos]
        ds.PixelSpacing = [dr, dc]
        ds.SliceThickness = ds_
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = int(slices_2d.shape[1]), int(slices_2d.shape[2])
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = np.ascontiguousarray(slices_2d[s].astype(np.uint16)).tobytes()
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


__all__ = ["ROLES", "SPACING"]
