"""RANO-LGG's diameters and product, and the largest 3D diameter, on shapes whose answers are known in mm.

Shapes are drawn in millimetres (a pixel belongs to the shape when its centre does) at anisotropic spacing and
rotated; a rasterised shape can differ from the drawn one by half a pixel at each end, so every length must come
within one pixel's diagonal of the exact value.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lggdemo.measure import MEASURABLE_MM, measure
from lggdemo.measure.diameters import bidimensional, max_diameter_3d, mean_diameter_mm


def _plane_mm(shape: tuple[int, int], row_mm: float, col_mm: float) -> tuple[np.ndarray, np.ndarray]:
    r, c = np.indices(shape).astype(float)
    return r * row_mm, c * col_mm


def ellipse(shape: tuple[int, int], row_mm: float, col_mm: float, a: float, b: float, angle_deg: float) -> np.ndarray:
    """Semi-axes a (along ``angle_deg`` from the column axis) and b, in mm, centred in the plane."""
    y, x = _plane_mm(shape, row_mm, col_mm)
    y, x = y - y.mean(), x - x.mean()
    t = math.radians(angle_deg)
    u, v = x * math.cos(t) + y * math.sin(t), -x * math.sin(t) + y * math.cos(t)
    return (u / a) ** 2 + (v / b) ** 2 <= 1


def rectangle(shape: tuple[int, int], row_mm: float, col_mm: float, length: float, width: float,
              angle_deg: float) -> np.ndarray:
    y, x = _plane_mm(shape, row_mm, col_mm)
    y, x = y - y.mean(), x - x.mean()
    t = math.radians(angle_deg)
    u, v = x * math.cos(t) + y * math.sin(t), -x * math.sin(t) + y * math.cos(t)
    return (np.abs(u) <= length / 2) & (np.abs(v) <= width / 2)


def _mm(p: np.ndarray, q: np.ndarray, row_mm: float, col_mm: float) -> np.ndarray:
    return (np.asarray(q) - np.asarray(p)) * np.array([row_mm, col_mm])


SPACINGS = [(1.0, 1.0), (0.6, 1.1), (1.3, 0.45)]
ANGLES = [0.0, 23.0, 45.0, 71.0, 90.0, 137.0]


@pytest.mark.parametrize(("row_mm", "col_mm"), SPACINGS)
@pytest.mark.parametrize("angle", ANGLES)
def test_ellipse_axes_are_the_diameters(row_mm: float, col_mm: float, angle: float) -> None:
    a, b = 24.0, 13.0  # semi-axes, mm
    m = ellipse((200, 200), row_mm, col_mm, a, b, angle)
    tol = math.hypot(row_mm, col_mm)
    (p0, p1, longest), (q0, q1, perp) = bidimensional(m, row_mm, col_mm)
    assert longest == pytest.approx(2 * a, abs=tol)
    assert perp == pytest.approx(2 * b, abs=tol)
    # The lengths are the drawn lines' lengths in mm, and the lines are perpendicular in mm (not in pixels).
    long_vec, perp_vec = _mm(p0, p1, row_mm, col_mm), _mm(q0, q1, row_mm, col_mm)
    assert np.linalg.norm(long_vec) == pytest.approx(longest, rel=1e-9)
    assert np.linalg.norm(perp_vec) == pytest.approx(perp, rel=1e-9)
    assert abs(long_vec @ perp_vec) / (longest * perp) < 1e-9
    # The longest line runs along the major axis (angle from the column axis, rows downward), give or take the
    # rasterised ends: each end of the ellipse is a flat run of a few pixels, whose far corners the line joins.
    direction = math.degrees(math.atan2(long_vec[0], long_vec[1])) % 180
    assert min(abs(direction - angle % 180), 180 - abs(direction - angle % 180)) < 12
    # Both lines lie on the ellipse: their ends within a pixel of its boundary.
    for p in (p0, p1, q0, q1):
        r, c = int(round(p[0])), int(round(p[1]))
        assert m[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2].any()


@pytest.mark.parametrize(("row_mm", "col_mm"), SPACINGS)
@pytest.mark.parametrize("angle", [0.0, 30.0, 62.0, 90.0])
def test_rectangle_diameters(row_mm: float, col_mm: float, angle: float) -> None:
    """A rectangle's longest diameter is its diagonal D = sqrt(L² + W²); the chords perpendicular to the diagonal
    are longest (W·D/L, constant) between the two lines through the other corners."""
    length, width = 40.0, 18.0
    m = rectangle((220, 220), row_mm, col_mm, length, width, angle)
    tol = math.hypot(row_mm, col_mm)
    (_, _, longest), (_, _, perp) = bidimensional(m, row_mm, col_mm)
    diagonal = math.hypot(length, width)
    assert longest == pytest.approx(diagonal, abs=tol)
    assert perp == pytest.approx(width * diagonal / length, abs=tol)


def test_product_on_the_slice_of_largest_area_at_anisotropic_spacing() -> None:
    """An ellipsoid over slices: the key slice is its widest, and the product is that slice's 2a·2b in mm²."""
    spacing = (4.0, 0.7, 0.9)
    a, b, c = 25.0, 15.0, 14.0  # mm: in-plane semi-axes (rotated 30°), and along the slices
    s, r, k = np.indices((21, 160, 130)).astype(float)
    z, y, x = s * spacing[0] - 40.0, r * spacing[1] - 56.0, k * spacing[2] - 58.5
    t = math.radians(30)
    u, v = x * math.cos(t) + y * math.sin(t), -x * math.sin(t) + y * math.cos(t)
    mask = (u / a) ** 2 + (v / b) ** 2 + (z / c) ** 2 <= 1
    m = measure(mask, spacing)
    assert m.key_slice == 10  # z = 0
    assert m.longest is not None and m.perpendicular is not None
    assert m.longest.slice == m.perpendicular.slice == 10
    tol = math.hypot(spacing[1], spacing[2])
    assert m.longest.length_mm == pytest.approx(2 * a, abs=tol)
    assert m.perpendicular.length_mm == pytest.approx(2 * b, abs=tol)
    assert m.bidimensional_product_mm2 == pytest.approx(m.longest.length_mm * m.perpendicular.length_mm)
    assert abs(m.bidimensional_product_mm2 - 4 * a * b) <= (2 * a + tol) * (2 * b + tol) - 4 * a * b
    assert m.measurable is True
    # The largest 3D diameter of an ellipsoid is its longest axis; slices 4 mm thick add at most one voxel.
    assert m.max_diameter_3d_mm == pytest.approx(2 * a, abs=math.hypot(*spacing))


def test_box_3d_diameter_extent_and_mean_diameter_are_exact() -> None:
    spacing = (3.0, 0.5, 0.8)
    mask = np.zeros((12, 60, 60), bool)
    mask[2:7, 10:50, 20:45] = True  # 5 slices, 40 rows, 25 columns
    m = measure(mask, spacing)
    assert max_diameter_3d(mask, spacing) == pytest.approx(math.sqrt(15.0**2 + 20.0**2 + 20.0**2))
    assert m.extent_mm == pytest.approx((20.0, 20.0, 15.0))  # R-L (columns), A-P (rows), S-I (slices)
    assert m.extent_voxels == (25, 40, 5)
    volume_ml = 5 * 40 * 25 * 3.0 * 0.5 * 0.8 / 1000
    assert m.volume_ml == pytest.approx(volume_ml)
    assert m.mean_diameter_mm == pytest.approx((2 * volume_ml * 1000) ** (1 / 3))
    assert mean_diameter_mm(0.5) == pytest.approx(10.0)  # (2 x 500 mm³)^(1/3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_max_diameter_is_the_farthest_pair_of_all_voxel_corners(seed: int) -> None:
    """Only each line's end corners are searched; brute force over every corner of every voxel must agree, on
    scattered voxels (an untrained model's mask) as on a blob with holes."""
    from scipy.spatial.distance import pdist

    rng = np.random.default_rng(seed)
    mask = rng.random((4, 9, 11)) > (0.85 if seed else 0.4)
    spacing = (3.0, 0.9, 1.1)
    corners = np.argwhere(mask)[:, None, :] + np.array(list(np.ndindex(2, 2, 2)))[None] - 0.5
    brute = pdist(corners.reshape(-1, 3) * np.asarray(spacing)).max()
    assert max_diameter_3d(mask, spacing) == pytest.approx(brute, rel=1e-12)


@pytest.mark.parametrize(("scale", "expected"), [(1.02, True), (1.003, True), (0.997, False), (0.98, False)])
def test_measurable_at_the_10_mm_edge(scale: float, expected: bool) -> None:
    """A k x k pixel square's two diameters are both its diagonals, k·s·√2: choose s to put them at 10 mm·scale."""
    k = 10
    s = MEASURABLE_MM / (k * math.sqrt(2)) * scale
    mask = np.zeros((1, 40, 40), bool)
    mask[0, 10:10 + k, 15:15 + k] = True
    m = measure(mask, (5.0, s, s))
    assert m.longest is not None and m.perpendicular is not None
    assert m.longest.length_mm == pytest.approx(10 * scale, abs=1e-9)
    assert m.perpendicular.length_mm == pytest.approx(10 * scale, abs=0.01)
    assert m.measurable is expected


def test_long_but_thin_is_not_measurable() -> None:
    mask = ellipse((120, 120), 1.0, 1.0, 20.0, 4.0, 15.0)[None]
    m = measure(mask, (5.0, 1.0, 1.0))
    assert m.longest is not None and m.longest.length_mm > 35
    assert m.perpendicular is not None and m.perpendicular.length_mm < 10
    assert m.measurable is False
