"""The probability map goes back onto the input's own grid as the mask does: float32 0-1, same shape and affine."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from patient_files import blob_mask, fake_prediction
from scipy import ndimage

from lggdemo.patient.exporters import FORMATS, ExportError, mask_bytes, probability_nifti
from lggdemo.patient.readers import open_path
from lggdemo.patient.volume import VolumeError


@pytest.fixture(scope="module")
def odd_grid_patient(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A FLAIR-only NIfTI of 176 x 208 voxels in plane, stored L-P-S: the way back must resize and reorient."""
    rng = np.random.default_rng(0)
    data = (rng.random((176, 208, 12)) * 200).astype(np.int16)
    affine = np.diag([-0.9, -1.1, 4.0, 1.0])
    affine[:3, 3] = (80.0, 110.0, -30.0)
    path = tmp_path_factory.mktemp("prob") / "odd_flair.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / max(1, int(a.sum() + b.sum()))


def test_probability_nifti_lands_where_the_mask_does(odd_grid_patient: Path) -> None:
    vol = open_path(odd_grid_patient).volume()
    assert vol.grid.plane_shape != (256, 256)  # the resize is exercised
    blob = blob_mask(vol.slices.shape[:3]).astype(bool)
    # a smooth probability that crosses 0.5 at the blob's edge
    inside = ndimage.distance_transform_edt(blob, sampling=(8, 1, 1))
    outside = ndimage.distance_transform_edt(~blob, sampling=(8, 1, 1))
    probability = 1.0 / (1.0 + np.exp(-(inside - outside) / 2.0))
    prediction = fake_prediction(vol, blob.astype(np.uint8))
    prediction = type(prediction)(**{**prediction.__dict__, "probability": probability.astype(np.float16)})

    name, data = mask_bytes("prob-nifti", vol, prediction)
    assert name == "odd_flair_prob.nii.gz" and "prob-nifti" in FORMATS
    img = nib.Nifti1Image.from_bytes(gzip.decompress(data))
    source = nib.load(str(odd_grid_patient))
    assert img.shape == source.shape and np.allclose(img.affine, source.affine)
    assert img.get_data_dtype() == np.float32
    values = np.asarray(img.dataobj)
    assert values.dtype == np.float32 and 0.0 <= values.min() and values.max() <= 1.0
    assert values.max() > 0.9 and values.min() < 0.1
    # thresholded at 0.5, it is the mask the NIfTI exporter writes on the same grid (orientation and resize agree)
    mask = vol.mask_on_source_grid(blob.astype(np.uint8)).astype(bool)
    assert _dice(values > 0.5, mask) > 0.97
    # a flipped or transposed map could not pass: the mask flipped left-right overlaps far less
    assert _dice(values > 0.5, mask[::-1]) < 0.5


def test_probability_is_refused_when_missing_or_misshapen(odd_grid_patient: Path) -> None:
    vol = open_path(odd_grid_patient).volume()
    prediction = fake_prediction(vol, np.zeros(vol.slices.shape[:3], np.uint8))
    with pytest.raises(VolumeError, match="does not match"):
        vol.probability_on_source_grid(np.zeros((2, 256, 256), np.float32))

    class MaskOnly:
        mask = prediction.mask
        model_version = "m"

    with pytest.raises(ExportError, match="no probability map"):
        probability_nifti(vol, MaskOnly())  # type: ignore[arg-type]
