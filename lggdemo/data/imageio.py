"""The one place that turns image bytes into arrays, for the dataset and for uploads alike.

Uploads arrive in every shape a scanner export or a screenshot can take (16-bit, grayscale, RGBA,
palette, huge). Decoding them here, with a note for every conversion, keeps the dataset reader, the
Predict page and the tests agreeing on what a "slice" is.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Sequence
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


def _too_large(name: str, size: tuple[int, int] | None) -> str:
    limit = f"the app accepts at most {MAX_SIDE}×{MAX_SIDE} pixels"
    if size is None:
        return f"{name}: the image is too large; {limit}."
    return f"{name}: the image is {size[0]}×{size[1]} pixels; {limit}."


def _declared_size(data: bytes) -> tuple[int, int] | None:
    """The (width, height) an image's header declares, read without PIL's pixel-count guard.

    ``Image.open`` refuses a huge image (a decompression bomb) before telling its size; only the header is
    read here, through the same format plugins ``Image.open`` uses, so nothing is decoded.
    """
    Image.init()
    prefix = data[:16]
    for fmt in Image.ID:
        factory, accept = Image.OPEN[fmt]
        try:
            verdict = accept(prefix) if accept else True
            if not verdict or isinstance(verdict, str):
                continue
            with factory(io.BytesIO(data), "") as im:
                width, height = im.size
            return int(width), int(height)
        except Exception:  # noqa: BLE001 -- a plugin that cannot read this header; try the next one
            continue
    return None


def _open(source: bytes | Path, name: str) -> Image.Image:
    if not isinstance(source, (bytes, bytearray)):
        # Read the bytes up front: a file PIL fails to decode would otherwise stay open.
        try:
            if Path(source).stat().st_size > MAX_BYTES:
                raise ImageDecodeError(f"{name}: the file is larger than {MAX_BYTES // 2**20} MB.")
            source = Path(source).read_bytes()
        except OSError as exc:
            raise ImageDecodeError(f"{name}: cannot be read ({exc.strerror or exc}).") from exc
    if len(source) == 0:
        raise ImageDecodeError(f"{name}: the file is empty.")
    if len(source) > MAX_BYTES:
        raise ImageDecodeError(f"{name}: the file is larger than {MAX_BYTES // 2**20} MB.")
    stream = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(stream)
            w, h = img.size
            if max(w, h) > MAX_SIDE:
                raise ImageDecodeError(_too_large(name, (w, h)))
            img.load()
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # PIL's own pixel-count guard fired before our per-side check could: say the app's limit, not PIL's.
        raise ImageDecodeError(_too_large(name, _declared_size(source))) from exc
    except UnidentifiedImageError as exc:
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


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))


def resize_image(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an (H, W, 3) uint8 slice to ``size`` (a side, or (H, W)); a no-op at the right size."""
    h, w = _hw(size)
    if image.shape[:2] == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))


def resize_mask(mask: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize a 0/1 mask keeping it binary (bilinear then 50% threshold, so edges stay smooth).

    ``size`` may be (H, W): a predicted mask goes back to a non-square upload's own shape.
    """
    h, w = _hw(size)
    if mask.shape[:2] == (h, w):
        return mask.astype(np.uint8)
    up = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((w, h), Image.BILINEAR))
    return (up > 127).astype(np.uint8)


# --- uploads: several files from the Predict page, images and their optional masks ----------------

#: More slices than any patient in the dataset (88); keeps one request from tying up the server.
MAX_UPLOAD_SLICES = 120
MASK_SUFFIX = "_mask"
_NUMBER_RE = re.compile(r"(\d+)")


@dataclass(frozen=True)
class UploadedSlice:
    """One slice ready for the models: resized to SLICE_SIZE, with what was done to it and its truth mask."""

    name: str
    image: np.ndarray  # (SLICE_SIZE, SLICE_SIZE, 3) uint8
    original_size: tuple[int, int]  # (H, W) as uploaded: the predicted mask is returned at this size
    notes: tuple[str, ...] = ()
    truth: np.ndarray | None = None  # (SLICE_SIZE, SLICE_SIZE) uint8 0/1, when a ground-truth mask came with it


@dataclass(frozen=True)
class UploadBatch:
    """What a set of uploads became: the usable slices and, for everything refused, a message for the user."""

    slices: tuple[UploadedSlice, ...]
    problems: tuple[str, ...] = ()


def split_mask_name(name: str) -> tuple[str, bool]:
    """``a/b_12_mask.tif`` -> (``b_12``, True); ``b_12.png`` -> (``b_12``, False)."""
    stem = Path(name).stem
    if stem.lower().endswith(MASK_SUFFIX):
        return stem[: -len(MASK_SUFFIX)], True
    return stem, False


def natural_key(name: str) -> tuple[object, ...]:
    """Sort ``x_2`` before ``x_10``, as the dataset numbers slices (from inferior to superior)."""
    return tuple(int(p) if p.isdigit() else p.lower() for p in _NUMBER_RE.split(name))


def to_slice(decoded: DecodedImage, name: str) -> UploadedSlice:
    """A decoded upload at any size -> a SLICE_SIZE slice, with a note when it had to be resized."""
    h, w = decoded.array.shape[:2]
    notes = list(decoded.notes)
    if (h, w) != (SLICE_SIZE, SLICE_SIZE):
        aspect = "" if h == w else " (aspect ratio not kept)"
        notes.append(f"Resized from {w}×{h} to {SLICE_SIZE}×{SLICE_SIZE}{aspect}: the models were trained on "
                     f"{SLICE_SIZE}×{SLICE_SIZE} slices; the mask download is scaled back to {w}×{h}.")
    return UploadedSlice(name, resize_image(decoded.array, SLICE_SIZE), (h, w), tuple(notes))


def read_uploads(files: Sequence[tuple[str, bytes]], masks: Sequence[tuple[str, bytes]] = ()) -> UploadBatch:
    """Turn uploaded (name, bytes) pairs into slices; every bad file becomes a message, never an exception.

    Ground-truth masks come either in ``files`` named ``<image stem>_mask.*`` or in ``masks`` (named like
    their image, with or without ``_mask``). A mask must have its image's exact size: a resized or
    mismatched mask would give a misleading Dice, so it is refused and the image is still predicted.
    """
    problems: list[str] = []
    images: dict[str, tuple[str, bytes]] = {}
    truths: dict[str, tuple[str, bytes]] = {}
    for name, data in files:
        stem, is_mask = split_mask_name(name)
        target = truths if is_mask else images
        if stem in target:
            problems.append(f"{name}: a file with the same name was already uploaded; this copy was ignored.")
            continue
        target[stem] = (name, data)
    for name, data in masks:
        stem, _ = split_mask_name(name)
        if stem in truths:
            problems.append(f"{name}: a mask for {stem} was already uploaded; this copy was ignored.")
            continue
        truths[stem] = (name, data)

    slices: list[UploadedSlice] = []
    ordered = sorted(images, key=natural_key)
    if len(ordered) > MAX_UPLOAD_SLICES:
        problems.append(f"{len(ordered)} images uploaded; only the first {MAX_UPLOAD_SLICES} (by name) are used.")
        ordered = ordered[:MAX_UPLOAD_SLICES]
    for stem in ordered:
        name, data = images[stem]
        try:
            decoded = decode_image(data, name)
        except ImageDecodeError as exc:
            problems.append(f"{exc} It was skipped.")
            truths.pop(stem, None)
            continue
        sl = to_slice(decoded, name)
        if stem in truths:
            mask_name, mask_data = truths.pop(stem)
            try:
                mask = decode_mask(mask_data, mask_name)
            except ImageDecodeError as exc:
                problems.append(f"{exc} The mask was ignored; {name} is predicted without Dice.")
            else:
                mh, mw = mask.array.shape[:2]
                h, w = sl.original_size
                if (mh, mw) != (h, w):
                    problems.append(f"{mask_name}: the mask is {mw}×{mh} px but its image {name} is {w}×{h} px; "
                                    f"the mask was ignored and {name} is predicted without Dice.")
                else:
                    sl = UploadedSlice(sl.name, sl.image, sl.original_size, sl.notes + mask.notes,
                                       resize_mask(mask.array, SLICE_SIZE))
        slices.append(sl)
    for stem, (mask_name, _) in truths.items():
        if stem not in images:
            problems.append(f"{mask_name}: a mask without an image named {stem}.* was ignored.")
    return UploadBatch(tuple(slices), tuple(problems))
