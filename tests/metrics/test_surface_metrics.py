"""Surface metrics (MONAI's) against cases computed by hand, and the empty-mask rules this project decides."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lggdemo.metrics.surface import hd95, surface_metrics


def _ball(shape: tuple[int, int, int], spacing: tuple[float, float, float], centre_mm: np.ndarray,
          radius: float) -> np.ndarray:
    grid = np.indices(shape).astype(float) * np.asarray(spacing)[:, None, None, None]
    return ((grid - centre_mm[:, None, None, None]) ** 2).sum(0) <= radius * radius


def test_concentric_cubes_match_the_hand_count() -> None:
    """A 20-voxel cube inside a 22-voxel one (0.8 mm voxels). Every inner surface voxel is one step (0.8 mm)
    from the outer surface; of the outer surface's 22³ - 20³ = 2648 voxels, the 6·20² face voxels are 0.8 mm
    from the inner one, the 12·20 edge voxels 0.8·√2 and the 8 corners 0.8·√3. So HD95 = 0.8·√2 (the outer
    side's 95th percentile falls among the edge voxels), ASSD is the mean of all 2168 + 2648 distances, and
    at 1 mm only the edges and corners fall outside."""
    s = 0.8
    inner = np.zeros((30, 30, 30), bool)
    inner[5:25, 5:25, 5:25] = True
    outer = np.zeros_like(inner)
    outer[4:26, 4:26, 4:26] = True
    m = surface_metrics(inner, outer, (s, s, s))
    n_in, faces, edges, corners = 20**3 - 18**3, 6 * 20**2, 12 * 20, 8
    assert m.hd95_mm == pytest.approx(s * math.sqrt(2), abs=1e-5)
    assert m.assd_mm == pytest.approx((n_in * s + faces * s + edges * s * math.sqrt(2) + corners * s * math.sqrt(3))
                                      / (n_in + faces + edges + corners), abs=1e-5)
    assert m.surface_dice_1mm == pytest.approx((n_in + faces) / (n_in + faces + edges + corners), abs=1e-6)
    assert m.surface_dice_2mm == pytest.approx(1.0)
    assert m.empty == "none"


@pytest.mark.parametrize(("spacing", "d"), [((1.0, 1.0, 1.0), 6.0), ((1.0, 1.0, 1.0), 4.0), ((2.0, 0.8, 0.8), 4.8)])
def test_two_offset_balls(spacing: tuple[float, float, float], d: float) -> None:
    """Two balls of radius R, centres d apart (d <= R). A point of one sphere at angle θ from the offset lies at
    r = sqrt(R² + d² - 2Rd·cosθ) from the other centre, so its distance to the other sphere is |r - R|. On a
    sphere cosθ is uniform over the area, so r² is uniform on [(R-d)², (R+d)²]: r has density ∝ r, and
    P(|r - R| <= t) = ∫_{R-t}^{R+t} r dr / ∫_{R-d}^{R+d} r dr = t / d. The surface distance is uniform on [0, d]
    for either surface: HD95 = 0.95·d, ASSD = d/2, surface Dice at τ = τ/d. Voxelised, within a voxel."""
    radius = 15.0
    shape = tuple(int(math.ceil(2 * (radius + d + 4) / s)) for s in spacing)
    centre = np.array(shape) * np.array(spacing) / 2
    a = _ball(shape, spacing, centre, radius)  # type: ignore[arg-type]
    b = _ball(shape, spacing, centre + np.array([0.0, 0.0, d]), radius)  # type: ignore[arg-type]
    voxel = max(spacing)
    m = surface_metrics(a, b, spacing)
    assert m.hd95_mm == pytest.approx(0.95 * d, abs=voxel)
    assert m.assd_mm == pytest.approx(d / 2, abs=voxel / 2)
    assert m.surface_dice_2mm == pytest.approx(2.0 / d, abs=0.15)
    assert m.surface_dice_1mm < m.surface_dice_2mm
    # In mm, not voxels: the same balls read at twice the spacing are twice as far apart.
    assert hd95(a, b, tuple(2 * s for s in spacing)) == pytest.approx(2 * m.hd95_mm, rel=1e-5)


def test_empty_masks_are_decided_not_inf() -> None:
    ball = _ball((20, 20, 20), (1.0, 1.0, 1.0), np.array([10.0, 10.0, 10.0]), 5.0)
    none = np.zeros_like(ball)
    both = surface_metrics(none, none, (1.0, 1.0, 1.0))
    assert (both.hd95_mm, both.assd_mm, both.surface_dice_1mm, both.empty) == (0.0, 0.0, 1.0, "both")
    missed = surface_metrics(none, ball, (1.0, 1.0, 1.0))
    assert missed.hd95_mm is None and missed.assd_mm is None and missed.surface_dice_2mm == 0.0
    assert missed.empty == "prediction"
    assert surface_metrics(ball, none, (1.0, 1.0, 1.0)).empty == "reference"
    same = surface_metrics(ball, ball, (3.0, 1.0, 1.0))
    assert (same.hd95_mm, same.assd_mm, same.surface_dice_1mm) == (0.0, 0.0, 1.0)


def test_shapes_must_agree() -> None:
    with pytest.raises(ValueError, match="shape"):
        surface_metrics(np.ones((4, 4, 4)), np.ones((4, 4, 5)), None)
    with pytest.raises(ValueError, match="spacing"):
        surface_metrics(np.ones((4, 4, 4)), np.ones((4, 4, 4)), (1.0, 1.0))


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (4.0, 0.7, 0.9)])
def test_the_shared_distances_reduce_as_monai_does(spacing: tuple[float, float, float]) -> None:
    """surface_metrics computes MONAI's surface distances once and reduces them itself: the same numbers as MONAI's
    own compute_hausdorff_distance / compute_average_surface_distance / compute_surface_dice (hd95, assd and
    surface_dice here call those)."""
    from lggdemo.metrics.surface import assd, surface_dice

    rng = np.random.default_rng(3)
    a = _ball((24, 48, 48), spacing, np.array([12 * spacing[0], 22.0 * spacing[1], 24.0 * spacing[2]]), 12.0)
    b = _ball((24, 48, 48), spacing, np.array([11 * spacing[0], 26.0 * spacing[1], 21.0 * spacing[2]]), 10.0)
    b |= rng.random(b.shape) > 0.999  # stray voxels: a long tail of distances
    m = surface_metrics(a, b, spacing)
    assert m.hd95_mm == pytest.approx(hd95(a, b, spacing), rel=1e-5)
    assert m.assd_mm == pytest.approx(assd(a, b, spacing), rel=1e-5)
    assert [m.surface_dice_1mm, m.surface_dice_2mm] == pytest.approx(surface_dice(a, b, spacing), rel=1e-6)
