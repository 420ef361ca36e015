"""Intensities as stored: the modality LUT (RescaleSlope/Intercept), MONOCHROME1, signed data and the bit depth change
what is stored, never what the model sees -- the per-volume window gives the same slices for every variant."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
from patient_files import world_series

from lggdemo.patient.readers import open_files

SHAPE, SPACING = (8, 64, 64), (3.0, 3.6, 3.6)  # the phantom head at a coarse grid: quick, with a bright structure


def restored(files: list[tuple[str, bytes]], change: Callable[[object, np.ndarray], np.ndarray]) -> list[tuple[str, bytes]]:
    """The same series with each instance's header and pixel data changed by ``change(ds, stored) -> new stored``."""
    import pydicom

    out = []
    for name, data in files:
        ds = pydicom.dcmread(io.BytesIO(data))
        new = change(ds, ds.pixel_array.astype(np.int64))
        ds.PixelData = np.ascontiguousarray(new.astype(np.int16 if ds.PixelRepresentation else np.uint16)).tobytes()
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out.append((name, buf.getvalue()))
    return out


def sixteen_bit(ds, v):  # noqa: ANN001,ANN201
    ds.BitsStored, ds.HighBit = 16, 15
    return v * 16


def rescaled(ds, v):  # noqa: ANN001,ANN201
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = "0.25", "-300", "US"  # stored 4x finer, offset
    ds.BitsStored, ds.HighBit = 16, 15
    return v * 4 + 1200  # modality value = 0.25 * (4v + 1200) - 300 = v


def monochrome1(ds, v):  # noqa: ANN001,ANN201
    ds.PhotometricInterpretation = "MONOCHROME1"  # 0 is white: the scanner stored the negative
    return 4095 - v


def signed(ds, v):  # noqa: ANN001,ANN201
    ds.PixelRepresentation = 1
    return v - 1000


@pytest.fixture(scope="module")
def twelve_bit() -> list[tuple[str, bytes]]:
    from pydicom.uid import generate_uid

    return world_series("FLAIR", shape=SHAPE, spacing=SPACING, study_uid=generate_uid(), for_uid=generate_uid(),
                        centre=(0.0, 0.0, 9.0))


@pytest.mark.parametrize("change", [sixteen_bit, rescaled, monochrome1, signed], ids=lambda f: f.__name__)
def test_every_way_of_storing_gives_the_same_slices(twelve_bit: list[tuple[str, bytes]], change) -> None:  # noqa: ANN001
    base = open_files(twelve_bit, "base").volume()
    assert int(base.slices[..., 1].max()) == 255 and any("percentiles" in n for n in base.provenance.notes)
    vol = open_files(restored(twelve_bit, change), change.__name__).volume()
    diff = np.abs(vol.slices.astype(int) - base.slices.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (diff.max(), (diff > 0).mean())  # float rounding at most


def test_monochrome1_is_inverted_so_the_structure_stays_bright(twelve_bit: list[tuple[str, bytes]]) -> None:
    vol = open_files(restored(twelve_bit, monochrome1), "m1").volume()
    flair = vol.slices[..., 1]
    assert flair.max() == 255 and np.median(flair[flair > 0]) < 128  # bright structure, darker head, black outside
    assert flair[:, 0, 0].max() == 0  # the corner outside the head is background, not white


def test_eight_bit_data_is_kept_as_stored(twelve_bit: list[tuple[str, bytes]]) -> None:
    """The one exception to the window, by value range not bit depth: integers already in 0..255 (8-bit exports such
    as the kaggle_3m slices) are kept, so they round-trip exactly."""
    def eight_bit(ds, v):  # noqa: ANN001,ANN202
        return v * 255 // 1600

    vol = open_files(restored(twelve_bit, eight_bit), "eight").volume()
    import pydicom

    stored = np.stack([pydicom.dcmread(io.BytesIO(d)).pixel_array for _, d in restored(twelve_bit, eight_bit)])
    assert vol.slices[..., 1].max() == stored.max() <= 255
    assert not any("percentiles" in n for n in vol.provenance.notes)
