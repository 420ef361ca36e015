"""Pictures people look at: a mask or a heatmap drawn over one MRI channel.

The EDA slice browser, the Predict page and the Grad-CAM views all draw through these two
functions, so a mask looks the same wherever it appears.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

CHANNELS = ("pre-contrast", "FLAIR", "post-contrast")
MASK_COLOUR = (255, 64, 64)


def channel_rgb(image: np.ndarray, channel: int | None = 1) -> np.ndarray:
    """One channel of an (H, W, 3) slice as a gray RGB image; ``None`` keeps the colour composite."""
    if channel is None:
        return image.astype(np.uint8)
    return np.repeat(image[..., channel : channel + 1], 3, axis=2).astype(np.uint8)


def outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    m = mask.astype(bool)
    return m & ~ndimage.binary_erosion(m, iterations=width)


def overlay_mask(
    base: np.ndarray,
    mask: np.ndarray,
    *,
    alpha: float = 0.4,
    colour: tuple[int, int, int] = MASK_COLOUR,
    mode: str = "fill",
) -> np.ndarray:
    """Blend ``mask`` (0/1, same H×W) over an RGB ``base``; ``mode`` is "fill" or "outline"."""
    if base.shape[:2] != mask.shape[:2]:
        raise ValueError(f"mask {mask.shape[:2]} does not match image {base.shape[:2]}")
    region = outline(mask, 2) if mode == "outline" else mask.astype(bool)
    a = 1.0 if mode == "outline" else float(np.clip(alpha, 0, 1))
    out = base.astype(np.float32).copy()
    out[region] = (1 - a) * out[region] + a * np.asarray(colour, np.float32)
    return out.round().astype(np.uint8)


def jet(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> RGB uint8 with the classic jet colour map (no matplotlib needed)."""
    v = np.clip(values, 0, 1)[..., None]
    r = np.clip(1.5 - np.abs(4 * v - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * v - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * v - 1), 0, 1)
    return (np.concatenate([r, g, b], axis=-1) * 255).astype(np.uint8)


def overlay_heatmap(base: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.45) -> np.ndarray:
    """Blend a [0, 1] heatmap (same H×W) over an RGB ``base``."""
    if base.shape[:2] != heatmap.shape[:2]:
        raise ValueError(f"heatmap {heatmap.shape[:2]} does not match image {base.shape[:2]}")
    a = float(np.clip(alpha, 0, 1))
    return ((1 - a) * base.astype(np.float32) + a * jet(heatmap).astype(np.float32)).round().astype(np.uint8)
