"""Diameters of a mask in millimetres: RANO-LGG's two perpendicular axial diameters, and the largest 3D one.

Geometry convention: a mask pixel is a small rectangle, ``row_mm`` tall and ``col_mm`` wide, so a lesion of n
pixels in a row is n pixels long (edge to edge, as a calliper laid on the image reads it), not n - 1 (centre to
centre). Coordinates are in the display layout's pixel indices ``(row, col)``, pixel centres at integers, so a
pixel's edges lie at +-0.5: a line's endpoints can be drawn directly on the slice with ``extent`` of the image.

- **Longest diameter** (maximum Feret diameter): the largest distance in mm between two points of the lesion's
  cross-section (the union of its pixels), found between the corners of the pixels on its convex hull. It may
  leave a concave lesion, as a calliper's line does.
- **Perpendicular diameter**: the longest straight chord *inside* the cross-section (holes filled: a cyst or
  necrosis inside the abnormality is measured across, as radiologists do), perpendicular in mm to the longest
  diameter. Found by sampling chords every quarter pixel along the longest diameter, then every hundredth of a
  pixel around the best, each chord's ends found by bisection on the pixel squares.

Both are measured in mm at anisotropic spacing: "perpendicular" is perpendicular in millimetres, not in pixels.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import cdist

_CORNERS_2D = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])
CHORD_STEP_PX = 0.25  # spacing of the candidate perpendicular chords along the longest diameter
SAMPLE_STEP_PX = 0.05  # sampling step along each chord


@dataclass(frozen=True)
class Diameter:
    """One measured line on display slice ``slice`` (0-based), from ``p0`` to ``p1`` in (row, col) pixel
    coordinates (pixel centres at integers); ``length_mm`` is None when the spacing is unknown, ``length_px`` its
    length in pixel units (meaningful on its own only for square pixels)."""

    slice: int
    p0: tuple[float, float]
    p1: tuple[float, float]
    length_mm: float | None
    length_px: float

    def to_dict(self) -> dict[str, object]:
        return {"slice": self.slice, "p0": [round(v, 3) for v in self.p0], "p1": [round(v, 3) for v in self.p1],
                "length_mm": None if self.length_mm is None else round(self.length_mm, 3),
                "length_px": round(self.length_px, 3)}


def _hull_points(points: np.ndarray) -> np.ndarray:
    """The vertices of the convex hull of ``points`` (all of them when degenerate, e.g. collinear)."""
    if len(points) <= 4:
        return points
    try:
        return points[ConvexHull(points).vertices]
    except QhullError:  # flat: all points on a line (or plane, in 3D)
        return points


def _farthest_pair(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The two points farthest apart (brute force over hull vertices: a few hundred at most)."""
    best = (points[0], points[0], 0.0)
    for chunk in range(0, len(points), 512):
        block = points[chunk : chunk + 512]
        d = cdist(block, points)
        i, j = np.unravel_index(int(np.argmax(d)), d.shape)
        if d[i, j] > best[2]:
            best = (block[i], points[j], float(d[i, j]))
    return best


def _hull_candidates(mask: np.ndarray) -> np.ndarray:
    """Points whose convex hull is that of the union of ``mask``'s pixels (2D) or voxels (3D), in index units
    (centres at integers, so corners at half-integers).

    Along each line of the last axis only the first and the last element's outer corners are kept: every other
    corner lies between two of those on a line, so it is never a hull vertex. That bounds the points by the lines
    (8 per line in 3D) instead of the surface: a noisy mask of a million boundary corners took seconds."""
    lines = mask.reshape(-1, mask.shape[-1])
    has = lines.any(axis=1)
    hit = lines[has]
    ends = np.stack([np.argmax(hit, axis=1) - 0.5, hit.shape[1] - np.argmax(hit[:, ::-1], axis=1) - 0.5], axis=1)
    lead = np.argwhere(has.reshape(mask.shape[:-1]))
    offsets = np.array(list(itertools.product((-0.5, 0.5), repeat=mask.ndim - 1)))
    n, k, d = len(lead), len(offsets), mask.ndim
    base = np.broadcast_to((lead[:, None, :] + offsets[None])[:, :, None, :], (n, k, 2, d - 1))
    last = np.broadcast_to(ends[:, None, :, None], (n, k, 2, 1))
    return np.concatenate([base, last], axis=-1).reshape(-1, d)


def longest_diameter_2d(mask: np.ndarray, row_mm: float, col_mm: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(H, W) bool -> (p0, p1, length_mm): the maximum Feret diameter of the union of the mask's pixels.

    Points are (row, col) pixel coordinates; the length is in mm at (``row_mm``, ``col_mm``) pixel spacing.
    """
    scale = np.array([row_mm, col_mm])
    a, b, length = _farthest_pair(_hull_points(_hull_candidates(mask) * scale))
    return a / scale, b / scale, length


def _inside(filled: np.ndarray, pts_mm: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Whether each point (mm, last axis (row, col)) lies in a filled pixel (a pixel is the square around its centre)."""
    idx = np.rint(pts_mm / scale).astype(int)
    h, w = filled.shape
    ok = (idx[..., 0] >= 0) & (idx[..., 0] < h) & (idx[..., 1] >= 0) & (idx[..., 1] < w)
    out = np.zeros(ok.shape, bool)
    out[ok] = filled[idx[..., 0][ok], idx[..., 1][ok]]
    return out


def _chords(filled: np.ndarray, a: np.ndarray, u: np.ndarray, v: np.ndarray, ts: np.ndarray, ss: np.ndarray,
            scale: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For chords a + t·u + s·v (s sampled at ``ss``), each t's longest run of inside samples: the last sample
    before it and the first after it (both outside), and its first and last inside samples, as s values.
    A t with nothing inside gets NaN. Returns (s_out0, s_in0, s_in1, s_out1) stacked as (4, T)."""
    out = np.full((4, len(ts)), np.nan)
    for first in range(0, len(ts), 64):  # chunks of chords: memory stays bounded for any mask
        t_chunk = ts[first : first + 64]
        pts = a[None, None, :] + t_chunk[:, None, None] * u + ss[None, :, None] * v  # (T, S, 2) mm
        inside = _inside(filled, pts, scale).astype(np.int8)
        edges = np.diff(np.pad(inside, ((0, 0), (1, 1))), axis=1)
        for t_i in np.flatnonzero(inside.any(axis=1)):
            starts, ends = np.flatnonzero(edges[t_i] == 1), np.flatnonzero(edges[t_i] == -1)  # run [start, end)
            k = int(np.argmax(ends - starts))
            out[:, first + t_i] = ss[starts[k] - 1], ss[starts[k]], ss[ends[k] - 1], ss[ends[k]]
    return out[0], out[1], out[2], out[3]


def _bisect(filled: np.ndarray, base: np.ndarray, v: np.ndarray, s_in: np.ndarray, s_out: np.ndarray,
            scale: np.ndarray, steps: int = 30) -> np.ndarray:
    """Where each chord (base + s·v) crosses the boundary between an inside s and an outside s (to ~1e-9 px)."""
    s_in, s_out = s_in.copy(), s_out.copy()
    for _ in range(steps):
        mid = (s_in + s_out) / 2
        hit = _inside(filled, base + mid[:, None] * v, scale)
        s_in = np.where(hit, mid, s_in)
        s_out = np.where(hit, s_out, mid)
    return s_in


def perpendicular_chord_2d(mask: np.ndarray, p0: np.ndarray, p1: np.ndarray, row_mm: float,
                           col_mm: float) -> tuple[np.ndarray, np.ndarray, float]:
    """The longest chord inside ``mask`` (holes filled) perpendicular, in mm, to the line p0 -> p1.

    Chords every quarter pixel along p0 -> p1 (the region lies between them: p0, p1 are its farthest pair), each
    sampled every twentieth of a pixel; then, around the best, every hundredth of a pixel with the chord's ends
    found by bisection. Returns (q0, q1, length_mm) in (row, col) pixel coordinates.
    """
    filled = ndimage.binary_fill_holes(mask)
    scale = np.array([row_mm, col_mm])
    a, b = p0 * scale, p1 * scale
    length_u = float(np.linalg.norm(b - a))
    u = (b - a) / max(length_u, 1e-12)
    v = np.array([-u[1], u[0]])  # perpendicular in mm
    rc = np.argwhere(filled).astype(float)
    proj_v = (((rc[:, None, :] + _CORNERS_2D[None]).reshape(-1, 2)) * scale - a) @ v
    step_mm = CHORD_STEP_PX * min(row_mm, col_mm)
    sample_mm = SAMPLE_STEP_PX * min(row_mm, col_mm)
    ss = np.arange(float(proj_v.min()) - 2 * sample_mm, float(proj_v.max()) + 2.5 * sample_mm, sample_mm)
    ts = np.arange(0.0, length_u + step_mm / 2, step_mm)
    _, in0, in1, _ = _chords(filled, a, u, v, ts, ss, scale)
    if np.all(np.isnan(in0)):
        return p0, p0, 0.0
    t_best = ts[int(np.nanargmax(in1 - in0))]
    fine = np.clip(t_best + np.arange(-step_mm, step_mm * 1.001, step_mm / 25), 0.0, length_u)
    out0, in0, in1, out1 = _chords(filled, a, u, v, fine, ss, scale)
    keep = ~np.isnan(in0)
    fine, out0, in0, in1, out1 = fine[keep], out0[keep], in0[keep], in1[keep], out1[keep]
    base = a[None, :] + fine[:, None] * u
    s0 = _bisect(filled, base, v, in0, out0, scale)
    s1 = _bisect(filled, base, v, in1, out1, scale)
    i = int(np.argmax(s1 - s0))
    return (base[i] + s0[i] * v) / scale, (base[i] + s1[i] * v) / scale, float(s1[i] - s0[i])


def bidimensional(mask: np.ndarray, row_mm: float, col_mm: float) -> tuple[tuple[np.ndarray, np.ndarray, float],
                                                                            tuple[np.ndarray, np.ndarray, float]]:
    """(H, W) bool, non-empty -> ((p0, p1, longest_mm), (q0, q1, perpendicular_mm)), RANO-LGG's two lines."""
    p0, p1, longest = longest_diameter_2d(mask, row_mm, col_mm)
    q0, q1, perp = perpendicular_chord_2d(mask, p0, p1, row_mm, col_mm)
    return (p0, p1, longest), (q0, q1, perp)


def max_diameter_3d(mask: np.ndarray, spacing: tuple[float, float, float]) -> float:
    """(S, H, W) bool, non-empty -> the largest distance in mm between two points of the union of its voxels
    (voxel corners: a lesion on one 5 mm slice is 5 mm tall)."""
    return _farthest_pair(_hull_points(_hull_candidates(mask) * np.asarray(spacing, float)))[2]


def mean_diameter_mm(volume_ml: float) -> float:
    """Mean tumour diameter (Pallud et al., Ann Neurol 2010; Mandonnet et al. 2003): (2V)^(1/3), V in mm³.

    The LGG growth literature's measure (velocity of diametric expansion, mm/year): it treats the tumour as an
    ellipsoid whose three diameters D1 D2 D3 give V = D1·D2·D3 / 2, so (2V)^(1/3) is their geometric mean.
    (The equivalent-sphere diameter, (6V/pi)^(1/3), is 0.985 times this.)
    """
    return float((2.0 * volume_ml * 1000.0) ** (1.0 / 3.0))
