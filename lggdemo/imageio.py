"""The one place that turns image bytes into arrays, for the dataset and for uploads alike.

Uploads arrive in every shape a scanner export or a screenshot can take (16-bit, grayscale, RGBA,
palette, huge). Decoding them here, with a note for every conversion, keeps the dataset reader, the
Predict page and the tests agreeing on what a "slice" is.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

#: Refuse anything larger per side: a decompression bomb must fail before it is decoded.
MAX_SIDE = 4096
MAX_BYTES = 64 * 1024 * 1024
SLICE_SIZE = 256


class ImageDecodeError(ValueError):
    """A file that cannot become a slice; the message is meant for the person who supplied it."""


@dataclass(frozen=True)
class DecodedImage:
    array: np.ndarray  # uint8, (H, W, 3) for images, (H, W) of 0/1 for masks
    notes: tuple[str, ...] = field(default_factory=tuple)


def _open(source: bytes | Path, name: str) -> Image.Image:
    if isinstance(source, (bytes, bytearray)):
        if len(source) == 0:
            raise ImageDecodeError(f"{name}: the file is empty.")
        if len(source) > MAX_BYTES:
            raise ImageDecodeError(f"{name}: the file is larger than {MAX_BYTES // 2**20} MB.")
        stream: io.BytesIO | Path = io.BytesIO(source)
    else:
        stream = Path(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(stream)
            w, h = img.size
            if max(w, h) > MAX_SIDE:
                raise ImageDecodeError(f"{name}: {w}×{h} px is larger than {MAX_SIDE} px per side.")
            img.load()
    except ImageDecodeError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"{name}: not a readable image ({exc.__class__.__name__}).") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"{name}: the image is truncated or corrupt ({exc}).") from exc
    return img


def _to_uint8(arr: np.ndarray, notes: list[str]) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    arr = arr.astype(np.float64)
    lo, hi = np.percentile(arr, [0.5, 99.5]) if arr.size else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1.0
    notes.append("High bit-depth image rescaled to 8 bits (0.5–99.5 percentile window).")
    return np.clip((arr - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)


def decode_image(source: bytes | Path, name: str | None = None) -> DecodedImage:
    """Return an (H, W, 3) uint8 slice: channels pre-contrast, FLAIR, post-contrast."""
    name = name or (source.name if isinstance(source, Path) else "image")
    img = _open(source, name)
    notes: list[str] = []
    mode = img.mode
    if mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "F", "LA"):
        if mode == "LA":
            img = img.convert("L")
        gray = _to_uint8(np.asarray(img), notes)
        notes.append("Single-channel image: treated as FLAIR and copied into all three channels.")
        arr = np.repeat(gray[..., None], 3, axis=2)
    else:
        if mode == "RGBA":
            notes.append("Alpha channel dropped.")
        elif mode != "RGB":
            notes.append(f"Converted from {mode} to RGB.")
        arr = np.asarray(img.convert("RGB"))
    return DecodedImage(np.ascontiguousarray(arr, dtype=np.uint8), tuple(notes))


def decode_mask(source: bytes | Path, name: str | None = None) -> DecodedImage:
    """Return an (H, W) uint8 mask of 0/1; any non-zero pixel counts as tumour after a 50% threshold."""
    name = name or (source.name if isinstance(source, Path) else "mask")
    img = _open(source, name)
    notes: list[str] = []
    arr = np.asarray(img)
    if arr.ndim == 3:
        notes.append("Colour mask: its first channel was used.")
        arr = arr[..., 0]
    arr = _to_uint8(arr, notes) if arr.dtype != np.uint8 and arr.dtype != bool else arr.astype(np.uint8)
    top = int(arr.max()) if arr.size else 0
    mask = (arr > top / 2).astype(np.uint8) if top > 0 else np.zeros(arr.shape, np.uint8)
    return DecodedImage(mask, tuple(notes))


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8 image or 0/1 mask (masks are written 0/255 so any viewer shows them)."""
    arr = np.asarray(array)
    if arr.ndim == 2 and arr.max(initial=0) <= 1:
        arr = arr.astype(np.uint8) * 255
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of an (H, W, 3) uint8 slice to (size, size, 3); a no-op at the right size."""
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resize a 0/1 mask keeping it binary (bilinear then 50% threshold, so edges stay smooth)."""
    if mask.shape[:2] == (size, size):
        return mask.astype(np.uint8)
    up = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((size, size), Image.BILINEAR))
    return (up > 127).astype(np.uint8)
