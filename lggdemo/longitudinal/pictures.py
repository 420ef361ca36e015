"""Pictures of a pair on the baseline grid: each visit with its mask and diameters, the change overlay, and the
checkerboard that shows whether the registration worked.

All are (H, W, 3) uint8 arrays from :mod:`lggdemo.viz` (the page and the PDF draw the same pixels). The checkerboard
alternates squares of the baseline and the registered follow-up: where the registration is right, edges run on
across the squares' borders; where it is wrong, they jump.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lggdemo.viz.measurements import LONGEST_COLOUR, PERPENDICULAR_COLOUR, Line, draw_diameters
from lggdemo.viz.overlay import channel_rgb, overlay_mask

NEW_COLOUR = (255, 140, 0)  # orange: tumour at follow-up only
GONE_COLOUR = (60, 140, 255)  # blue: tumour at baseline only
SAME_COLOUR = (200, 60, 60)  # tumour at both visits
CHECKER_SQUARE = 32  # pixels of the 256x256 slice


def checkerboard(a: np.ndarray, b: np.ndarray, square: int = CHECKER_SQUARE) -> np.ndarray:
    """Two (H, W) grey slices interleaved in squares: ``a`` where (row // square + col // square) is even."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"checkerboard of {a.shape} and {b.shape}: the slices must share one grid")
    rows, cols = np.indices(a.shape[:2])
    pick = ((rows // square + cols // square) % 2 == 0)
    out = np.where(pick, a, b)
    return np.repeat(out[..., None], 3, axis=-1).astype(np.uint8) if out.ndim == 2 else out.astype(np.uint8)


def change_overlay(flair: np.ndarray, change_slice: np.ndarray, both: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """FLAIR with tumour at both visits (red), new at follow-up (orange) and gone (blue)."""
    rgb = channel_rgb(flair[..., None].repeat(3, axis=-1) if flair.ndim == 2 else flair, 1)
    rgb = overlay_mask(rgb, np.asarray(both).astype(np.uint8), alpha=alpha * 0.6, colour=SAME_COLOUR)
    rgb = overlay_mask(rgb, (np.asarray(change_slice) > 0).astype(np.uint8), alpha=alpha, colour=NEW_COLOUR)
    return overlay_mask(rgb, (np.asarray(change_slice) < 0).astype(np.uint8), alpha=alpha, colour=GONE_COLOUR)


def visit_picture(slice_rgb: np.ndarray, mask: np.ndarray, index: int, measurements: Mapping[str, Any] | None,
                  *, scale: int = 2, alpha: float = 0.35) -> np.ndarray:
    """One visit's slice on FLAIR with its mask, and, on its key slice, the two diameters and a scale bar.

    ``measurements``: the visit's ``Measurements.to_dict()`` (the change table's), so the lines drawn are the
    ones measured.
    """
    base = overlay_mask(channel_rgb(slice_rgb, 1), np.asarray(mask).astype(np.uint8), alpha=alpha)
    lines: list[Line] = []
    spacing = None
    if measurements:
        spacing = measurements.get("spacing_mm")
        if measurements.get("key_slice") == index:
            for name, colour in (("longest", LONGEST_COLOUR), ("perpendicular", PERPENDICULAR_COLOUR)):
                d = measurements.get(name)
                if d:
                    length = d.get("length_mm") if d.get("length_mm") is not None else d.get("length_px")
                    unit = "mm" if d.get("length_mm") is not None else "px"
                    label = "" if length is None else f"{float(length):.1f} {unit}"
                    lines.append(Line(tuple(d["p0"]), tuple(d["p1"]), label, colour))  # type: ignore[arg-type]
    return draw_diameters(base, lines, float(spacing[2]) if spacing else None, scale=scale)


def key_slice(change_map: np.ndarray, baseline_mask: np.ndarray, followup_mask: np.ndarray) -> int:
    """The slice to open the view on: the most changed one, else the one with most tumour, else the middle."""
    for volume in (np.abs(change_map), np.asarray(baseline_mask) + np.asarray(followup_mask)):
        per_slice = volume.reshape(len(volume), -1).sum(axis=1)
        if per_slice.any():
            return int(np.argmax(per_slice))
    return len(change_map) // 2
