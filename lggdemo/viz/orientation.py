"""Orientation letters on a displayed slice: which patient direction each edge of the picture faces.

Every page draws its slice pictures through :func:`with_letters`, so a reader always sees where the front and
the patient's right are (radiological display: "R" on the image's left). The letters come from the data
(``patient.orientation.edge_letters`` for a volume; :data:`~lggdemo.data.directions.KAGGLE_EDGES` for
kaggle_3m slices) and are drawn into the pixels, in a colour no MRI channel or mask overlay uses, so they stay
with the picture wherever it goes (a screenshot, a download of the page's image).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lggdemo.data.directions import KAGGLE_EDGES, EdgeLetters

LETTER_COLOUR = (255, 230, 0)  # yellow: not grey (MRI), red (mask), green (truth), violet (removed), orange (errors)
OUTLINE_COLOUR = (0, 0, 0)


def letter_pixels(picture: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels in the letters' yellow, found in no grey MRI and no mask, truth, removed-piece or error
    overlay -- how a test, or a browser test reading the served image, finds the letters."""
    p = np.asarray(picture).astype(int)
    r, g, b = p[..., 0], p[..., 1], p[..., 2]
    return (r > 170) & (g > 150) & (b < 120) & (r - b > 90) & (g - b > 80) & (np.abs(r - g) < 60)


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def letter_size(height: int) -> int:
    """Font size in pixels for a picture ``height`` pixels tall: readable when a 256² slice fills a column."""
    return max(11, round(height / 17))


def with_letters(picture: np.ndarray, letters: EdgeLetters = KAGGLE_EDGES) -> np.ndarray:
    """An (H, W, 3) uint8 picture with a letter at the middle of each edge (top, bottom, left, right).

    Returns a new array; the input is left as it is. Letters are drawn inside the picture, a few pixels from
    the edge, with a thin dark outline so they read on bright skin and on black background alike.
    """
    arr = np.asarray(picture)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) picture, got shape {arr.shape}")
    h, w = arr.shape[:2]
    image = Image.fromarray(arr.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    size = letter_size(h)
    font = _font(size)
    margin = max(2, size // 4)
    stroke = max(1, size // 10)
    places = (  # anchor codes: horizontal (l, m, r) then vertical (t, m, b)
        (letters.top, (w / 2, margin), "mt"),
        (letters.bottom, (w / 2, h - margin), "mb"),
        (letters.left, (margin, h / 2), "lm"),
        (letters.right, (w - margin, h / 2), "rm"),
    )
    for text, xy, anchor in places:
        draw.text(xy, text, fill=LETTER_COLOUR, font=font, anchor=anchor, stroke_width=stroke,
                  stroke_fill=OUTLINE_COLOUR)
    return np.asarray(image)
