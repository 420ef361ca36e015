"""What PACS sends: compressed transfer syntaxes decode through pydicom's plugins (pylibjpeg + libjpeg / openjpeg,
pyjpegls, pydicom's RLE) to the pixels of their uncompressed twin, and a compressed study reads back exactly."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from patient_files import dataset_patient, dicom_series

from lggdemo.patient.readers import open_files


def pydicom_file(name: str):  # noqa: ANN201
    """One of pydicom's own test files, read; skipped where the installed pydicom does not ship it."""
    import pydicom

    path = Path(pydicom.__file__).parent / "data" / "test_files" / name
    if not path.is_file():
        pytest.skip(f"pydicom's test file {name} is not in the installed package")
    return pydicom.dcmread(path)


@pytest.mark.parametrize("name, syntax", [
    ("MR_small_RLE.dcm", "1.2.840.10008.1.2.5"),  # RLE Lossless
    ("MR_small_jp2klossless.dcm", "1.2.840.10008.1.2.4.90"),  # JPEG 2000 Lossless
    ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80"),  # JPEG-LS Lossless
])
def test_lossless_mr_equals_its_uncompressed_twin(name: str, syntax: str) -> None:
    ds = pydicom_file(name)
    assert ds.file_meta.TransferSyntaxUID == syntax
    assert np.array_equal(ds.pixel_array, pydicom_file("MR_small.dcm").pixel_array)


def test_jpeg_lossless_process_14_sv1_equals_its_twin() -> None:
    """The syntax the issue found undecodable: pydicom's SC_rgb_jpeg_gdcm.dcm, against the RLE of the same image."""
    ds = pydicom_file("SC_rgb_jpeg_gdcm.dcm")
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.70"  # JPEG Lossless, Process 14 SV1
    assert np.array_equal(ds.pixel_array, pydicom_file("SC_rgb_rle.dcm").pixel_array)


def test_jpeg_lossless_process_14_equals_its_twin() -> None:
    """Process 14 with any predictor (…4.57): an SV1 stream is one of them; pydicom ships no file of its own."""
    from pydicom.uid import JPEGLossless

    ds = pydicom_file("SC_rgb_jpeg_gdcm.dcm")
    ds.file_meta.TransferSyntaxUID = JPEGLossless
    assert np.array_equal(ds.pixel_array, pydicom_file("SC_rgb_rle.dcm").pixel_array)


@pytest.mark.parametrize("name, syntax, shape, bits", [
    ("JPGExtended.dcm", "1.2.840.10008.1.2.4.51", (1024, 256), 12),  # JPEG Extended, 12-bit: no twin shipped
    ("JPEG2000.dcm", "1.2.840.10008.1.2.4.91", (1024, 256), 16),  # JPEG 2000 (lossy allowed)
    ("JPEGLSNearLossless_16.dcm", "1.2.840.10008.1.2.4.81", (50, 10), 16),  # JPEG-LS near-lossless
])
def test_lossy_syntaxes_decode_to_a_sane_shape_and_range(name: str, syntax: str, shape: tuple[int, int],
                                                         bits: int) -> None:
    ds = pydicom_file(name)
    assert ds.file_meta.TransferSyntaxUID == syntax and int(ds.BitsStored) == bits
    arr = ds.pixel_array
    assert arr.shape == shape and np.issubdtype(arr.dtype, np.integer)
    signed = int(ds.PixelRepresentation) == 1
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    assert lo <= int(arr.min()) < int(arr.max()) <= hi and float(arr.std()) > 1.0


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90"])
def test_a_compressed_study_reads_back_like_the_uncompressed_one(synthetic_root: Path, syntax: str) -> None:
    """The whole reader path (scan, order, decode, assemble) on a study compressed with pydicom's own encoders."""
    import pydicom
    from pydicom.uid import UID, generate_uid

    patient = dataset_patient(synthetic_root, 3)
    files = dicom_series(patient.slices[:8, :, :, 1], "FLAIR", study_uid=generate_uid(), for_uid=generate_uid())
    packed = []
    for name, data in files:
        ds = pydicom.dcmread(io.BytesIO(data))
        ds.compress(UID(syntax))
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        packed.append((name, buf.getvalue()))
    plain = open_files(files, "plain").volume()
    vol = open_files(packed, "packed").volume()
    assert np.array_equal(vol.slices, plain.slices)
    assert np.array_equal(vol.slices[..., 1], patient.slices[:8, :, :, 1])
