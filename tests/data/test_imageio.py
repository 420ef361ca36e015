"""Decoding uploads: every odd file a user can drop on the Predict page becomes a slice or a clear message."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from lggdemo.data.imageio import (
    MAX_SIDE,
    SLICE_SIZE,
    ImageDecodeError,
    decode_image,
    decode_mask,
    encode_png,
    natural_key,
    read_uploads,
    resize_mask,
    split_mask_name,
)


def png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG") if mode else Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def tif(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="TIFF")
    return buf.getvalue()


@pytest.fixture()
def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (SLICE_SIZE, SLICE_SIZE, 3), dtype=np.uint8)


def test_plain_rgb_slice_passes_unchanged(rgb: np.ndarray) -> None:
    batch = read_uploads([("p_1.tif", tif(rgb))])
    assert batch.problems == ()
    (sl,) = batch.slices
    assert sl.notes == () and sl.original_size == (SLICE_SIZE, SLICE_SIZE) and sl.truth is None
    np.testing.assert_array_equal(sl.image, rgb)


def test_grayscale_16bit_and_rgba_are_converted_with_notes(rgb: np.ndarray) -> None:
    gray = rgb[..., 1]
    deep = (rgb[..., 1].astype(np.uint16) * 200).astype(np.uint16)
    rgba = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 128, np.uint8)], axis=2)
    batch = read_uploads([("g.png", png(gray)), ("d.png", png(deep)), ("a.png", png(rgba))])
    assert batch.problems == ()
    by_name = {s.name: s for s in batch.slices}
    g, d, a = by_name["g.png"], by_name["d.png"], by_name["a.png"]
    assert any("Single-channel" in n for n in g.notes)
    np.testing.assert_array_equal(g.image[..., 0], gray)
    np.testing.assert_array_equal(g.image[..., 0], g.image[..., 2])
    assert any("8 bits" in n for n in d.notes) and d.image.dtype == np.uint8 and d.image.max() == 255
    assert any("Alpha" in n for n in a.notes)
    np.testing.assert_array_equal(a.image, rgb)


def test_non_square_image_is_resized_with_a_note_and_keeps_its_size(rgb: np.ndarray) -> None:
    wide = np.asarray(Image.fromarray(rgb).resize((300, 200)))
    (sl,) = read_uploads([("w.png", png(wide))]).slices
    assert sl.image.shape == (SLICE_SIZE, SLICE_SIZE, 3)
    assert sl.original_size == (200, 300)
    assert any("Resized from 300×200" in n and "aspect ratio" in n for n in sl.notes)


@pytest.mark.parametrize(
    "data, expect",
    [
        (b"", "empty"),
        (b"this is not an image at all" * 10, "not a readable image"),
        (None, "truncated"),  # filled below: a PNG cut in half
    ],
)
def test_broken_files_become_messages_and_others_still_go_through(rgb: np.ndarray, data: bytes | None,
                                                                  expect: str) -> None:
    if data is None:
        full = png(rgb)
        data = full[: len(full) // 2]
    batch = read_uploads([("bad.png", data), ("good.png", png(rgb))])
    assert [s.name for s in batch.slices] == ["good.png"]
    assert len(batch.problems) == 1 and "bad.png" in batch.problems[0] and expect in batch.problems[0]


def test_oversized_image_is_refused_before_decoding() -> None:
    big = png(np.zeros((2, MAX_SIDE + 1), np.uint8))
    with pytest.raises(ImageDecodeError, match=f"{MAX_SIDE + 1}×2 pixels; the app accepts at most {MAX_SIDE}×{MAX_SIDE}"):
        decode_image(big, "big.png")
    batch = read_uploads([("big.png", big)])
    assert batch.slices == () and "big.png" in batch.problems[0]


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width``×``height`` pixels with one tiny IDAT: a decompression bomb's header."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [20000, 10000])  # PIL raises DecompressionBombError / warns, respectively
def test_decompression_bomb_states_the_apps_own_limit(side: int) -> None:
    bomb = _png_header_only(side, side)
    with pytest.raises(ImageDecodeError) as info:
        decode_image(bomb, "bomb.png")
    limit = f"the app accepts at most {MAX_SIDE}×{MAX_SIDE} pixels"
    assert str(info.value) == f"bomb.png: the image is {side}×{side} pixels; {limit}."
    batch = read_uploads([("bomb.png", bomb)])
    assert batch.slices == () and "Decompression" not in batch.problems[0] and f"{side}×{side} pixels" in batch.problems[0]
    with pytest.raises(ImageDecodeError, match=f"at most {MAX_SIDE}×{MAX_SIDE}"):
        decode_mask(bomb, "bomb_mask.png")


def test_mask_pairing_by_name_and_by_second_uploader(rgb: np.ndarray) -> None:
    m = np.zeros((SLICE_SIZE, SLICE_SIZE), np.uint8)
    m[50:90, 60:120] = 255
    batch = read_uploads(
        [("P_2.tif", tif(rgb)), ("P_2_mask.tif", tif(m)), ("P_10.tif", tif(rgb)), ("P_3.png", png(rgb))],
        masks=[("P_3.png", png(m))],
    )
    assert batch.problems == ()
    assert [s.name for s in batch.slices] == ["P_2.tif", "P_3.png", "P_10.tif"]  # numeric order
    truths = {s.name: s.truth for s in batch.slices}
    assert truths["P_10.tif"] is None
    for name in ("P_2.tif", "P_3.png"):
        assert truths[name] is not None and truths[name].sum() == 40 * 60 and set(np.unique(truths[name])) == {0, 1}


def test_mismatched_orphan_broken_and_duplicate_masks_are_reported(rgb: np.ndarray) -> None:
    small = np.zeros((128, 128), np.uint8)
    batch = read_uploads(
        [("a.png", png(rgb)), ("a_mask.png", png(small)), ("b.png", png(rgb)), ("b_mask.png", b"garbage"),
         ("c_mask.png", png(small)), ("a.png", png(rgb))],
    )
    assert [s.name for s in batch.slices] == ["a.png", "b.png"]
    assert all(s.truth is None for s in batch.slices)
    text = "\n".join(batch.problems)
    assert "a_mask.png: the mask is 128×128 px but its image a.png is 256×256 px" in text
    assert "b_mask.png" in text and "without Dice" in text
    assert "c_mask.png: a mask without an image" in text
    assert "already uploaded" in text
    assert len(batch.problems) == 4


def test_too_many_slices_are_capped(monkeypatch: pytest.MonkeyPatch, rgb: np.ndarray) -> None:
    import lggdemo.data.imageio as imageio

    monkeypatch.setattr(imageio, "MAX_UPLOAD_SLICES", 2)
    data = png(rgb[:8, :8])
    batch = imageio.read_uploads([(f"s_{i}.png", data) for i in range(1, 5)])
    assert [s.name for s in batch.slices] == ["s_1.png", "s_2.png"]
    assert "only the first 2" in batch.problems[0]


def test_mask_png_round_trip_at_non_square_size() -> None:
    m = np.zeros((SLICE_SIZE, SLICE_SIZE), np.uint8)
    m[100:160, 40:200] = 1
    back = resize_mask(m, (200, 300))
    assert back.shape == (200, 300)
    decoded = decode_mask(encode_png(back)).array
    np.testing.assert_array_equal(decoded, back)
    raw = np.asarray(Image.open(io.BytesIO(encode_png(back))))
    assert set(np.unique(raw)) == {0, 255}
    # Area scales with the pixel count (within the bilinear edge).
    assert abs(back.sum() / (200 * 300) - m.sum() / SLICE_SIZE**2) < 0.01


def test_names() -> None:
    assert split_mask_name("dir/TCGA_1_12_mask.tif") == ("TCGA_1_12", True)
    assert split_mask_name("TCGA_1_12.png") == ("TCGA_1_12", False)
    assert sorted(["x_10.tif", "x_9.tif", "x_1.tif"], key=natural_key) == ["x_1.tif", "x_9.tif", "x_10.tif"]
