"""Editing a 0/1 tumour mask by hand: brush and eraser strokes, deleting a piece, undo and reset.

Pure functions of numpy arrays (no Streamlit, no drawing component): the editor on Predict turns what a
person drew into :class:`Stroke` and :class:`Click` edits and applies them here, so every rule -- how wide a
stroke is, what counts as one piece, what undo restores -- is tested without a browser.

Coordinates are (x, y) = (column, row) in the mask's own pixels, floats allowed (a drawing on a canvas
twice the mask's size lands between pixels). A pixel belongs to a stroke when its centre is within
``radius`` of the polyline through the stroke's points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

#: Undo keeps at most this many earlier states (a 256² mask is 64 KiB: a few MiB per tab at most).
MAX_UNDO = 50
#: A click this close to a piece (in mask pixels) deletes it, so a click just off a thin piece still counts.
CLICK_TOLERANCE_PX = 3.0

Point = tuple[float, float]


class EditError(ValueError):
    """An edit that cannot apply to this mask (wrong shape, a point off the slice); the message says why."""


def as_mask(mask: np.ndarray, *, shape: tuple[int, int] | None = None) -> np.ndarray:
    """``mask`` as a 2D uint8 0/1 array; :class:`EditError` when it is not 2D or not of ``shape``."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise EditError(f"a mask must be a 2D array, got shape {m.shape}")
    if shape is not None and m.shape != tuple(shape):
        raise EditError(f"the edit is for a {shape[0]}×{shape[1]} slice, but this mask is {m.shape[0]}×{m.shape[1]}")
    return (m > 0).astype(np.uint8)


def _check_points(points: Sequence[Point], shape: tuple[int, int]) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if not len(pts) or not np.isfinite(pts).all():
        raise EditError("a stroke needs at least one finite point")
    h, w = shape
    margin = 0.5
    if ((pts[:, 0] < -margin) | (pts[:, 0] > w - 1 + margin) | (pts[:, 1] < -margin) | (pts[:, 1] > h - 1 + margin)).all():
        raise EditError(f"the stroke lies entirely outside the {h}×{w} slice")
    return pts


def stroke_footprint(shape: tuple[int, int], points: Sequence[Point], radius: float) -> np.ndarray:
    """Boolean (H, W): the pixels whose centre is within ``radius`` of the polyline through ``points``.

    One point is a disc. Parts of a stroke that run off the slice are clipped, not refused (a drag
    that leaves the canvas still paints what is on it).
    """
    if radius <= 0 or not np.isfinite(radius):
        raise EditError(f"the brush radius must be positive, got {radius}")
    pts = _check_points(points, shape)
    h, w = shape
    out = np.zeros(shape, bool)
    segments = list(zip(pts[:-1], pts[1:], strict=True)) if len(pts) > 1 else [(pts[0], pts[0])]
    for a, b in segments:
        x0 = max(int(np.floor(min(a[0], b[0]) - radius)), 0)
        x1 = min(int(np.ceil(max(a[0], b[0]) + radius)), w - 1)
        y0 = max(int(np.floor(min(a[1], b[1]) - radius)), 0)
        y1 = min(int(np.ceil(max(a[1], b[1]) + radius)), h - 1)
        if x0 > x1 or y0 > y1:
            continue
        yy, xx = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
        d = b - a
        length2 = float(d @ d)
        if length2 == 0:
            t = np.zeros(xx.shape)
        else:
            t = np.clip(((xx - a[0]) * d[0] + (yy - a[1]) * d[1]) / length2, 0.0, 1.0)
        dist2 = (xx - (a[0] + t * d[0])) ** 2 + (yy - (a[1] + t * d[1])) ** 2
        out[y0 : y1 + 1, x0 : x1 + 1] |= dist2 <= radius * radius
    return out


def paint(mask: np.ndarray, points: Sequence[Point], radius: float, *, erase: bool = False) -> np.ndarray:
    """A new mask with the stroke painted as tumour (brush) or cleared (``erase``); ``mask`` is not changed."""
    m = as_mask(mask)
    foot = stroke_footprint(m.shape, points, radius)
    out = m.copy()
    out[foot] = 0 if erase else 1
    return out


def component_at(mask: np.ndarray, point: Point, *, tolerance: float = CLICK_TOLERANCE_PX) -> np.ndarray:
    """Boolean (H, W): the connected piece (8-connected) under ``point``, or the nearest one within ``tolerance``.

    All False when no piece is that close. A point off the slice is an :class:`EditError`.
    """
    m = as_mask(mask)
    h, w = m.shape
    x, y = float(point[0]), float(point[1])
    if not (np.isfinite(x) and np.isfinite(y)) or not (-0.5 <= x <= w - 0.5 and -0.5 <= y <= h - 0.5):
        raise EditError(f"the click at ({x:.1f}, {y:.1f}) is outside the {h}×{w} slice")
    labels, n = ndimage.label(m, structure=np.ones((3, 3), bool))
    if n == 0:
        return np.zeros(m.shape, bool)
    r, c = int(round(min(max(y, 0), h - 1))), int(round(min(max(x, 0), w - 1)))
    label = int(labels[r, c])
    if label == 0:
        rows, cols = np.nonzero(m)
        d2 = (rows - y) ** 2 + (cols - x) ** 2
        nearest = int(np.argmin(d2))
        if d2[nearest] > tolerance * tolerance:
            return np.zeros(m.shape, bool)
        label = int(labels[rows[nearest], cols[nearest]])
    return labels == label


def delete_component(mask: np.ndarray, point: Point, *, tolerance: float = CLICK_TOLERANCE_PX) -> np.ndarray:
    """A new mask without the piece :func:`component_at` finds (unchanged when the click is near none)."""
    m = as_mask(mask)
    out = m.copy()
    out[component_at(m, point, tolerance=tolerance)] = 0
    return out


@dataclass(frozen=True)
class Stroke:
    """A brush (or, with ``erase``, eraser) drag: points in mask pixels and the brush radius."""

    points: tuple[Point, ...]
    radius: float
    erase: bool = False


@dataclass(frozen=True)
class Click:
    """A click that deletes the piece under it."""

    point: Point


Edit = Stroke | Click


def apply_edit(mask: np.ndarray, edit: Edit) -> np.ndarray:
    """One edit applied to ``mask``: the one place a drawn gesture becomes pixels."""
    if isinstance(edit, Stroke):
        return paint(mask, edit.points, edit.radius, erase=edit.erase)
    if isinstance(edit, Click):
        return delete_component(mask, edit.point)
    raise EditError(f"unknown edit {edit!r}")


@dataclass(frozen=True)
class EditHistory:
    """The model's mask, the edits' results so far, and the way back: immutable, each change a new history.

    ``states[0]`` is always the model's mask (what *reset* returns to); ``current`` the last state.
    An edit that changes no pixel adds no state, so undo never appears to do nothing.
    """

    states: tuple[np.ndarray, ...]
    dropped: int = field(default=0)  # earlier states forgotten beyond MAX_UNDO (the original is always kept)

    @classmethod
    def start(cls, original: np.ndarray) -> EditHistory:
        m = as_mask(original)
        m.setflags(write=False)
        return cls((m,))

    @property
    def original(self) -> np.ndarray:
        return self.states[0]

    @property
    def current(self) -> np.ndarray:
        return self.states[-1]

    @property
    def shape(self) -> tuple[int, int]:
        return self.original.shape  # type: ignore[return-value]

    @property
    def can_undo(self) -> bool:
        return len(self.states) > 1

    @property
    def edited(self) -> bool:
        """Whether the current mask differs from the model's."""
        return not np.array_equal(self.current, self.original)

    @property
    def n_edits(self) -> int:
        return len(self.states) - 1 + self.dropped

    def push(self, mask: np.ndarray) -> EditHistory:
        """A history whose current mask is ``mask`` (same shape required; identical masks are not recorded)."""
        m = as_mask(mask, shape=self.shape)
        if np.array_equal(m, self.current):
            return self
        m.setflags(write=False)
        states = (*self.states, m)
        dropped = self.dropped
        if len(states) > MAX_UNDO + 1:  # keep the original, forget the oldest edit after it
            states = (states[0], *states[2:])
            dropped += 1
        return EditHistory(states, dropped)

    def apply(self, *edits: Edit) -> EditHistory:
        """Each edit applied to the current mask in turn, every one its own undo step."""
        out = self
        for edit in edits:
            out = out.push(apply_edit(out.current, edit))
        return out

    def undo(self) -> EditHistory:
        return EditHistory(self.states[:-1], self.dropped) if self.can_undo else self

    def reset(self) -> EditHistory:
        """Back to the model's mask (a fresh history: reset is not itself undone)."""
        return EditHistory((self.original,))
