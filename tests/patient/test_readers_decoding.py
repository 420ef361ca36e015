"""What PACS sends: the DICOM reader turns each compressed transfer syntax into the same Volume as its uncompressed
twin, refuses colour after decoding it, and names the syntax it cannot decode.

Every test goes through the project's reader (``open_files(...).volume()``): the scan, the ordering, the decoding
through pydicom's plugins (pylibjpeg + libjpeg / openjpeg, pyjpegls, RLE), the modality LUT and the per-volume window.
The compressed pixels come from pydicom's own test files, carried into an MR series of this suite's geometry.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from patient_files import dataset_patient, dicom_series

from lggdemo.patient.readers import open_files
from lggdemo.patient.volume import Volume, VolumeError

#: The attributes that describe stored pixels: carried over with the pixel data.
PIXEL_KEYS = ("SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated", "BitsStored", "HighBit",
              "PixelRepresentation", "PlanarConfiguration")


def pydicom_file(name: str):  # noqa: ANN201
    """One of pydicom's own test files, read; skipped where the installed pydicom does not ship it."""
    import pydicom

    path = Path(pydicom.__file__).parent / "data" / "test_files" / name
    if not path.is_file():
        pytest.skip(f"pydicom's test file {name} is not in the installed package")
    return pydicom.dcmread(path)


def series_carrying(source, slices: int = 3) -> list[tuple[str, bytes]]:  # noqa: ANN001
    """An axial MR FLAIR series of ``slices`` images, each holding ``source``'s stored pixels as they are: its
    transfer syntax, pixel format and (encapsulated or native) pixel data."""
    import pydicom
    from pydicom.uid import generate_uid

    files = dicom_series(np.zeros((slices, int(source.Rows), int(source.Columns))), "FLAIR",
                         study_uid=generate_uid(), for_uid=generate_uid())
    out = []
    for name, data in files:
        ds = pydicom.dcmread(io.BytesIO(data))
        ds.file_meta.TransferSyntaxUID = source.file_meta.TransferSyntaxUID
        for key in PIXEL_KEYS:
            if key in source:
                setattr(ds, key, getattr(source, key))
            elif key in ds:
                delattr(ds, key)
        ds.PixelData = source.PixelData
        ds["PixelData"].VR = source["PixelData"].VR
        ds["PixelData"].is_undefined_length = source["PixelData"].is_undefined_length
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out.append((name, buf.getvalue()))
    return out


def read(files: list[tuple[str, bytes]], name: str) -> Volume:
    return open_files(files, name).volume()


def decompressed(name: str):  # noqa: ANN201
    """The file stored uncompressed (pydicom decodes it once): a twin where pydicom ships none."""
    ds = pydicom_file(name)
    ds.decompress()
    return ds


@pytest.mark.parametrize("name, syntax", [
    ("MR_small_RLE.dcm", "1.2.840.10008.1.2.5"),  # RLE Lossless
    ("MR_small_jp2klossless.dcm", "1.2.840.10008.1.2.4.90"),  # JPEG 2000 Lossless
    ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80"),  # JPEG-LS Lossless
])
def test_a_lossless_series_reads_as_its_uncompressed_twin(name: str, syntax: str) -> None:
    """pydicom ships each of these beside MR_small.dcm, the same image uncompressed: an independent truth."""
    source = pydicom_file(name)
    assert source.file_meta.TransferSyntaxUID == syntax
    volume, twin = read(series_carrying(source), name), read(series_carrying(pydicom_file("MR_small.dcm")), "twin")
    assert np.array_equal(volume.slices, twin.slices)
    assert volume.slices[..., 1].std() > 10  # an image, not a blank the window made of a failed decode


@pytest.mark.parametrize("name, syntax, bits", [
    ("JPGExtended.dcm", "1.2.840.10008.1.2.4.51", 12),  # JPEG Extended, 12-bit: needs pylibjpeg-libjpeg
    ("JPEG2000.dcm", "1.2.840.10008.1.2.4.91", 16),  # JPEG 2000 (lossy allowed)
    ("JPEGLSNearLossless_16.dcm", "1.2.840.10008.1.2.4.81", 16),  # JPEG-LS near-lossless
])
def test_a_lossy_series_reads_as_its_decoded_pixels_stored_plainly(name: str, syntax: str, bits: int) -> None:
    source = pydicom_file(name)
    assert source.file_meta.TransferSyntaxUID == syntax and int(source.BitsStored) == bits
    volume, twin = read(series_carrying(source), name), read(series_carrying(decompressed(name)), "twin")
    assert np.array_equal(volume.slices, twin.slices)
    assert volume.slices[..., 1].std() > 10


@pytest.mark.parametrize("lossless", ["1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.57"])
def test_jpeg_lossless_process_14_is_decoded_then_refused_as_colour(lossless: str) -> None:
    """The syntax once found undecodable (Process 14, SV1 or any predictor). pydicom ships it only as an RGB image,
    which the reader refuses -- after decoding it: the refusal is about colour, not about the syntax."""
    source = pydicom_file("SC_rgb_jpeg_gdcm.dcm")
    source.file_meta.TransferSyntaxUID = lossless
    with pytest.raises(VolumeError, match="colour images are not taken") as refused:
        read(series_carrying(source), "rgb")
    assert "cannot be decoded" not in str(refused.value)


def test_a_syntax_no_plugin_decodes_is_named_in_the_error() -> None:
    """MPEG-2 video in an MR series: no decoder takes it; the message names the input, the file and the syntax."""
    from pydicom.encaps import encapsulate

    source = pydicom_file("MR_small.dcm")
    source.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 Main Profile / Main Level
    source.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(60)])
    source["PixelData"].VR, source["PixelData"].is_undefined_length = "OB", True
    with pytest.raises(VolumeError, match=r"mpeg / FLAIR: the pixel data of series_FLAIR/IM\d+\.dcm \(MPEG2 .*\) "
                                          r"cannot be decoded"):
        read(series_carrying(source), "mpeg")


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
