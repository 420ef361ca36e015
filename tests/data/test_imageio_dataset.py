"""Dataset-side decoding: what load_image/load_mask return for the layout's TIFFs, and how bad files fail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lggdemo.data.imageio import SLICE_SIZE
from lggdemo.data.kaggle import DatasetError, SliceRecord, load_image, load_mask, scan_dataset


def _record(tmp_path: Path, image: Image.Image, mask: Image.Image) -> SliceRecord:
    pid = "TCGA_AA_0001_20000101"
    rec = SliceRecord(pid, 1, tmp_path / f"{pid}_1.tif", tmp_path / f"{pid}_1_mask.tif")
    image.save(rec.image_path)
    mask.save(rec.mask_path)
    return rec


def test_image_keeps_channel_order_and_dtype(tmp_path: Path) -> None:
    arr = np.zeros((SLICE_SIZE, SLICE_SIZE, 3), np.uint8)
    arr[..., 0], arr[..., 1], arr[..., 2] = 10, 120, 230  # pre-contrast, FLAIR, post-contrast
    rec = _record(tmp_path, Image.fromarray(arr, "RGB"), Image.new("L", (SLICE_SIZE, SLICE_SIZE)))
    got = load_image(rec)
    assert got.dtype == np.uint8 and got.shape == (SLICE_SIZE, SLICE_SIZE, 3)
    np.testing.assert_array_equal(got, arr)


@pytest.mark.parametrize("mode", ["L", "1"])
def test_mask_becomes_zero_one(tmp_path: Path, mode: str) -> None:
    m = np.zeros((SLICE_SIZE, SLICE_SIZE), np.uint8)
    m[100:120, 50:90] = 255
    rec = _record(tmp_path, Image.new("RGB", (SLICE_SIZE, SLICE_SIZE)), Image.fromarray(m).convert(mode))
    got = load_mask(rec)
    assert got.dtype == np.uint8 and set(np.unique(got)) == {0, 1}
    assert int(got.sum()) == 20 * 40


def test_empty_mask_is_all_zero(tmp_path: Path) -> None:
    rec = _record(tmp_path, Image.new("RGB", (SLICE_SIZE, SLICE_SIZE)), Image.new("L", (SLICE_SIZE, SLICE_SIZE)))
    assert load_mask(rec).sum() == 0


def test_corrupt_files_raise_dataset_error_naming_the_file(tmp_path: Path) -> None:
    rec = _record(tmp_path, Image.new("RGB", (SLICE_SIZE, SLICE_SIZE)), Image.new("L", (SLICE_SIZE, SLICE_SIZE)))
    rec.image_path.write_bytes(b"not an image")
    with pytest.raises(DatasetError, match=rec.image_path.name):
        load_image(rec)
    data = rec.mask_path.read_bytes()
    rec.mask_path.write_bytes(data[: len(data) // 3])  # truncated after the header
    with pytest.raises(DatasetError, match=rec.mask_path.name):
        load_mask(rec)


def test_synthetic_slices_decode_like_real_ones(synthetic_root: Path) -> None:
    rec = scan_dataset(synthetic_root).slices()[5]
    img, mask = load_image(rec), load_mask(rec)
    assert img.shape == (SLICE_SIZE, SLICE_SIZE, 3) and mask.shape == (SLICE_SIZE, SLICE_SIZE)
    raw = np.asarray(Image.open(rec.mask_path))
    np.testing.assert_array_equal(mask, (raw > 127).astype(np.uint8))


@pytest.mark.real_data
def test_real_slices_decode(real_root: Path) -> None:
    index = scan_dataset(real_root)
    recs = index.slices()
    for rec in (recs[0], recs[len(recs) // 2]):
        img, mask = load_image(rec), load_mask(rec)
        assert img.dtype == np.uint8 and img.shape == (SLICE_SIZE, SLICE_SIZE, 3)
        assert set(np.unique(mask)) <= {0, 1}
        np.testing.assert_array_equal(img, np.asarray(Image.open(rec.image_path).convert("RGB")))
