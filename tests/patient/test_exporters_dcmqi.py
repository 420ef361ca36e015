"""A real client reads our DICOM SEG: dcmqi's ``segimage2itkimage`` (the converter 3D Slicer uses) turns it back into
a NIfTI whose voxels equal the project's NIfTI mask in world coordinates -- on a resampled study, an oblique one and
one whose FLAIR is an Enhanced (multi-frame) MR object."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from patient_files import (
    T1_COARSE,
    channel_structure,
    enhanced_object,
    fake_prediction,
    make_study,
    tilted_axial,
    vol_display,
)

from lggdemo.patient.exporters import mask_dicom_seg, mask_nifti
from lggdemo.patient.readers import open_files


def segimage2itkimage() -> str:
    """dcmqi's converter from the venv (PyPI package ``dcmqi``, requirements-dev.txt), else PATH; skip without it."""
    beside = Path(sys.executable).parent / "segimage2itkimage"
    found = str(beside) if beside.is_file() else shutil.which("segimage2itkimage")
    if not found:
        pytest.skip("dcmqi's segimage2itkimage is not installed (pip install -r requirements-dev.txt)")
    return found


def world_voxels(img: nib.Nifti1Image) -> np.ndarray:
    """World (RAS+ mm) centres of an image's non-zero voxels, rows sorted so two sets compare directly."""
    ijk = np.argwhere(np.asarray(img.dataobj) > 0).astype(float)
    ras = ijk @ img.affine[:3, :3].T + img.affine[:3, 3]
    return ras[np.lexsort(np.round(ras, 2).T[::-1])]


@pytest.mark.parametrize("kind", ["resampled", "oblique", "enhanced"])
def test_dcmqi_reads_our_seg_as_our_nifti(kind: str, tmp_path: Path) -> None:
    tool = segimage2itkimage()
    study = make_study(t1=T1_COARSE) if kind == "resampled" else make_study(flair_orientation=tilted_axial(10.0),
                                                                             t1=T1_COARSE)
    files = study.files
    if kind == "enhanced":  # FLAIR as one multi-frame object: the SEG references its frames
        files = [enhanced_object(files, "FLAIR"), *[(n, d) for n, d in files if not n.startswith("series_FLAIR/")]]
    vol = open_files(files, kind).volume()
    mask = vol_display(vol, channel_structure(vol, 0)).astype(np.uint8)  # the structure as seen on resampled T1
    prediction = fake_prediction(vol, mask)
    seg = tmp_path / "seg.dcm"
    seg.write_bytes(mask_dicom_seg(vol, prediction))
    ours = nib.Nifti1Image.from_bytes(gzip.decompress(mask_nifti(vol, prediction)))
    out = tmp_path / "dcmqi"
    out.mkdir()
    done = subprocess.run([tool, "--inputDICOM", str(seg), "--outputDirectory", str(out), "--outputType", "nifti",
                           "--prefix", "seg"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    theirs = nib.load(str(out / "seg-1.nii.gz"))
    a, b = world_voxels(ours), world_voxels(theirs)
    assert len(a) == int(mask.sum()) > 1000
    assert a.shape == b.shape and np.allclose(a, b, atol=1e-3)  # the same voxels, in world coordinates
    assert np.allclose(theirs.affine, ours.affine, atol=1e-3) and theirs.shape == ours.shape
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dcmqi", "seg.dcm"]  # nothing written elsewhere here
