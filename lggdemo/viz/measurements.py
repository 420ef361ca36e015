"""The two RANO-LGG diameters and a millimetre scale bar, drawn over one display slice.

The Predict page and the PDF report draw the key slice through :func:`draw_diameters`, so the lines a reader
sees on screen and on paper are the same pixels. Line ends are (row, column) positions on the 256x256 display
slice, as ``lggdemo.measure`` gives them (pixel centres); the picture is drawn ``scale`` times larger so that
the lines and labels stay legible in print.

The scale bar is horizontal: it measures along the image's columns, at the column spacing. In-plane spacing can
differ between rows and columns (a non-square acquisition resized to 256²), which is why the bar never doubles as
a vertical ruler, and why none is drawn when the spacing is unknown (the Kaggle layout records none).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

#: The longest diameter and the one perpendicular to it (colour-blind-safe yellow and cyan, clear of the red mask).
LONGEST_COLOUR = (255, 221, 0)
PERPENDICULAR_COLOUR = (0, 200, 255)
#: Scale-bar lengths to choose from (mm): the longest that fits in a quarter of the picture's width.
BAR_CHOICES_MM = (1, 2, 5, 10, 20, 50, 100)

Point = tuple[float, float]


@dataclass(frozen=True)
class Line:
    """One diameter to draw: its two ends as (row, column) display pixels, a label and a colour."""

    p0: Point
    p1: Point
    label: str
    colour: tuple[int, int, int]


def scale_bar_mm(width_px: int, mm_per_px: float) -> int:
    """The bar length (mm) from :data:`BAR_CHOICES_MM`: the longest that fits in a quarter of ``width_px``."""
    fits = [mm for mm in BAR_CHOICES_MM if mm / mm_per_px <= width_px / 4]
    return fits[-1] if fits else BAR_CHOICES_MM[0]


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow's bundled scalable font (needs FreeType)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, colour: tuple[int, int, int], size: int) -> None:
    """Text with a dark outline: readable over bright FLAIR signal and black background alike."""
    draw.text(xy, text, fill=colour, font=_font(size), stroke_width=max(1, size // 7), stroke_fill=(0, 0, 0))


def draw_diameters(rgb: np.ndarray, lines: Sequence[Line], mm_per_px: float | None, *, scale: int = 2,
                   caption: str | None = None) -> np.ndarray:
    """(H, W, 3) uint8 slice -> (scale*H, scale*W, 3) uint8 with each line, its label and a mm scale bar.

    Args:
        rgb: the slice as drawn (e.g. ``overlay_mask`` over FLAIR).
        lines: the diameters; empty when no tumour was found (then only the bar and the caption are drawn).
        mm_per_px: column spacing of ``rgb`` in mm, or None for no scale bar.
        scale: integer magnification (nearest-neighbour, so each voxel stays a visible square).
        caption: drawn top-left (e.g. "slice 12 of 24"), or nothing.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got {rgb.shape}")
    h, w = rgb.shape[:2]
    k = max(1, int(scale))
    picture = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).resize((w * k, h * k), Image.NEAREST)
    draw = ImageDraw.Draw(picture)
    font_px = max(11, 9 * k)
    for line in lines:
        (r0, c0), (r1, c1) = line.p0, line.p1
        x0, y0, x1, y1 = (c0 + 0.5) * k, (r0 + 0.5) * k, (c1 + 0.5) * k, (r1 + 0.5) * k
        draw.line([(x0, y0), (x1, y1)], fill=(0, 0, 0), width=2 * k + 2)  # dark edge under the colour
        draw.line([(x0, y0), (x1, y1)], fill=line.colour, width=2 * k)
        for x, y in ((x0, y0), (x1, y1)):
            draw.ellipse([x - 1.5 * k, y - 1.5 * k, x + 1.5 * k, y + 1.5 * k], fill=line.colour, outline=(0, 0, 0))
        _text(draw, (x1 + 2 * k, y1 - font_px / 2), line.label, line.colour, font_px)
    if caption:
        _text(draw, (3 * k, 3 * k), caption, (255, 255, 255), font_px)
    if mm_per_px is not None and mm_per_px > 0:
        bar_mm = scale_bar_mm(w, mm_per_px)
        bar_px = bar_mm / mm_per_px * k
        x0, y = 6 * k, h * k - 8 * k
        draw.rectangle([x0 - 1, y - k - 1, x0 + bar_px + 1, y + k + 1], fill=(0, 0, 0))
        draw.rectangle([x0, y - k, x0 + bar_px, y + k], fill=(255, 255, 255))
        _text(draw, (x0, y - k - font_px - 2), f"{bar_mm} mm", (255, 255, 255), font_px)
    return np.asarray(picture)
