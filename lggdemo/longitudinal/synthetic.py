"""Follow-up scans whose truth is known, made from one real visit: a known head movement and a known growth.

The dataset has one visit per patient, so the only way to check a registration and a change measurement against
the truth is to make the second visit ourselves: the baseline head is grown (or shrunk) around its tumour by a
smooth radial displacement field, then moved by a rigid transform, then optionally given noise and a slow bias
field (a different day's scanner). Images are resampled linearly, the truth mask by nearest neighbour.

The growth. Inside a ball of radius ``R`` around the tumour's centre of mass that holds the whole tumour, every
point moves radially to ``c + s (p - c)`` with ``s = factor ** (1/3)``: the tumour's volume scales by exactly
``factor``, whatever its shape. Outside the ball the displacement decays as a Gaussian of the distance to the ball
(sigma = ``R / 3``), so the brain next to it is pushed aside smoothly (mass effect) and tissue further than about
``R`` beyond it does not move. (A first version used sigma = ``R``: it moved the whole brain by millimetres and
biased the rigid registration by ~1 mm, which no real tumour's mass effect does.) The radial map is monotone for
volume factors up to ~3.7 (its slope stays above 0), so it is inverted numerically, radius by radius.

The movement. ``rotation_deg`` about the left-right, anterior-posterior and inferior-superior axes (SimpleITK's
Euler3DTransform convention: R = Rz Rx Ry) and ``translation_mm``, about the head's centre: the
matrix this module reports maps baseline points to follow-up points, exactly what :func:`register.register`
should find.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from lggdemo.longitudinal.register import registration_spacing, rotation_angle_deg
from lggdemo.patient.volume import Provenance, Volume

#: The mass effect's Gaussian decay outside the scaled ball: sigma = radius / DECAY_FRACTION.
DECAY_FRACTION = 3.0


class SyntheticError(ValueError):
    """A follow-up that cannot be made (no tumour to grow around, a factor out of range)."""


@dataclass(frozen=True)
class SyntheticFollowUp:
    """The made follow-up and its truth."""

    volume: Volume  # its ``truth`` is the grown, moved truth mask
    matrix: np.ndarray  # (4, 4) baseline mm -> follow-up mm (the head's movement only)
    rotation_deg: tuple[float, float, float]
    translation_mm: tuple[float, float, float]
    growth: float  # the chosen volume factor
    centre_mm: tuple[float, float, float]  # growth centre (the tumour's centre of mass), baseline mm
    radius_mm: float  # the ball that scales uniformly


def euler_rotation(rotation_deg: tuple[float, float, float]) -> np.ndarray:
    """The rotation of SimpleITK's Euler3DTransform (its default, ComputeZYX off: R = Rz Rx Ry), so that the angles
    a registration reads back compare directly with the ones made here."""
    ax, ay, az = np.radians(rotation_deg)
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ rx @ ry


def rigid_matrix(rotation_deg: tuple[float, float, float], translation_mm: tuple[float, float, float],
                 centre_mm: np.ndarray) -> np.ndarray:
    """(4, 4): p -> R (p - c) + c + t."""
    rot = euler_rotation(rotation_deg)
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = np.asarray(centre_mm) + np.asarray(translation_mm) - rot @ np.asarray(centre_mm)
    return out


def grid_points(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> np.ndarray:
    """(S*H*W, 3) float32 physical points (x, y, z) = (column, row, slice) * spacing, in C order of (S, H, W)."""
    s, h, w = shape
    z, y, x = np.meshgrid(np.arange(s, dtype=np.float32) * spacing[0], np.arange(h, dtype=np.float32) * spacing[1],
                          np.arange(w, dtype=np.float32) * spacing[2], indexing="ij")
    return np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)


def mask_points(mask: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """(N, 3) physical points (x, y, z) of a (S, H, W) mask's voxels."""
    idx = np.argwhere(mask)
    return np.stack([idx[:, 2] * spacing[2], idx[:, 1] * spacing[1], idx[:, 0] * spacing[0]], axis=1).astype(float)


@dataclass(frozen=True)
class RadialGrowth:
    """The growth map r -> g(r) about ``centre``; :meth:`inverse` pulls follow-up points back to the baseline."""

    centre: np.ndarray  # (3,) mm
    radius: float  # mm: the ball scaled uniformly
    factor: float  # volume factor

    @property
    def scale(self) -> float:
        return float(self.factor) ** (1.0 / 3.0)

    def radial(self, r: np.ndarray) -> np.ndarray:
        """g(r): the new distance from the centre of a point at distance r (continuous, monotone)."""
        r = np.asarray(r, float)
        inside = (self.scale - 1.0) * r
        sigma = self.radius / DECAY_FRACTION
        outside = (self.scale - 1.0) * self.radius * np.exp(-0.5 * ((r - self.radius) / sigma) ** 2)
        return r + np.where(r <= self.radius, inside, outside)

    def forward(self, points: np.ndarray) -> np.ndarray:
        d = points - self.centre
        r = np.linalg.norm(d, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            unit = np.where(r[:, None] > 0, d / r[:, None], 0.0)
        return self.centre + unit * self.radial(r)[:, None]

    def inverse(self, points: np.ndarray) -> np.ndarray:
        """Points of the grown head -> where they were at baseline (monotone g inverted by interpolation)."""
        d = points - self.centre
        r = np.linalg.norm(d, axis=1)
        table = np.linspace(0.0, max(float(r.max()), 1.0) * 1.2 + 10 * self.radius, 20000)
        source = np.interp(r, self.radial(table), table)
        with np.errstate(invalid="ignore", divide="ignore"):
            unit = np.where(r[:, None] > 0, d / r[:, None], 0.0)
        return (self.centre + unit * source[:, None]).astype(points.dtype)


def growth_about(truth: np.ndarray, spacing: tuple[float, float, float], factor: float) -> RadialGrowth:
    """The radial growth centred on a truth mask's centre of mass, its ball holding every tumour voxel (+1 voxel)."""
    if not 0.3 <= factor <= 3.0:  # (the map stays monotone up to ~3.7, see the module docstring)
        raise SyntheticError(f"growth factor {factor} is outside 0.3-3.")
    pts = mask_points(truth, spacing)
    if len(pts) == 0:
        raise SyntheticError("the truth mask is empty: there is no tumour to grow around.")
    centre = pts.mean(axis=0)
    radius = float(np.linalg.norm(pts - centre, axis=1).max()) + float(max(spacing))
    return RadialGrowth(centre=centre, radius=radius, factor=float(factor))


def make_follow_up(baseline: Volume, *, rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0),
                   translation_mm: tuple[float, float, float] = (0.0, 0.0, 0.0), growth: float = 1.0,
                   noise_sd: float = 0.0, bias: float = 0.0, seed: int = 0,
                   truth: np.ndarray | None = None) -> SyntheticFollowUp:
    """A follow-up of ``baseline`` (which needs a truth mask, or pass ``truth``) with a known movement and growth.

    ``noise_sd``: Gaussian noise in grey levels (0-255); ``bias``: peak relative amplitude of a smooth multiplicative
    field (0.1 = +-10 %). The follow-up keeps the baseline's grid shape and spacing (None stays None: the stand-in
    spacing of :mod:`register` is used for the geometry, as the registration will).
    """
    from scipy import ndimage

    mask = baseline.truth if truth is None else np.asarray(truth, bool)
    if mask is None:
        raise SyntheticError(f"{baseline.name}: a follow-up with known growth needs the baseline's truth mask.")
    spacing, _note = registration_spacing(baseline)
    shape = baseline.slices.shape[:3]
    grow = growth_about(mask, spacing, growth)
    head_centre = np.array([(shape[2] - 1) * spacing[2], (shape[1] - 1) * spacing[1], (shape[0] - 1) * spacing[0]]) / 2
    matrix = rigid_matrix(rotation_deg, translation_mm, head_centre)
    # follow-up point q -> baseline-frame point (undo the movement) -> where it was before the growth
    q = grid_points(shape, spacing)
    inv = np.linalg.inv(matrix)
    moved_back = (q @ inv[:3, :3].T.astype(np.float32)) + inv[:3, 3].astype(np.float32)
    src = grow.inverse(moved_back)
    del q, moved_back
    coords = np.stack([src[:, 2] / spacing[0], src[:, 1] / spacing[1], src[:, 0] / spacing[2]]).astype(np.float32)
    del src
    slices = np.empty_like(baseline.slices)
    for c in range(3):
        warped = ndimage.map_coordinates(baseline.slices[..., c].astype(np.float32), coords, order=1, mode="constant",
                                         cval=0.0).reshape(shape)
        slices[..., c] = np.clip(np.rint(warped), 0, 255).astype(np.uint8)
    new_truth = ndimage.map_coordinates(mask.astype(np.uint8), coords, order=0, mode="constant", cval=0).reshape(shape)
    del coords
    if noise_sd or bias:
        slices = _scanner_change(slices, noise_sd, bias, spacing, seed)
    notes = (f"synthetic follow-up of {baseline.name}: rotation {tuple(round(a, 2) for a in rotation_deg)} deg, "
             f"translation {tuple(round(t, 2) for t in translation_mm)} mm, volume x{growth:g}, noise sd {noise_sd:g}, "
             f"bias {bias:g}",)
    volume = replace(baseline, slices=slices, truth=new_truth.astype(bool), name=f"{baseline.name}-followup",
                     provenance=Provenance(baseline.provenance.kind, baseline.provenance.files, (),
                                           baseline.provenance.notes + notes), extra={})
    return SyntheticFollowUp(volume=volume, matrix=matrix, rotation_deg=tuple(map(float, rotation_deg)),  # type: ignore[arg-type]
                             translation_mm=tuple(map(float, translation_mm)), growth=float(growth),  # type: ignore[arg-type]
                             centre_mm=tuple(float(v) for v in grow.centre), radius_mm=grow.radius)  # type: ignore[arg-type]


def _scanner_change(slices: np.ndarray, noise_sd: float, bias: float, spacing: tuple[float, float, float],
                    seed: int) -> np.ndarray:
    """Another day's scanner: a smooth multiplicative bias field (a random low-order polynomial) and Gaussian noise,
    on the head only (the background stays black, as a scanner's does after its own masking)."""
    rng = np.random.default_rng(seed)
    s, h, w = slices.shape[:3]
    z, y, x = np.meshgrid(np.linspace(-1, 1, s), np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    terms = [x, y, z, x * y, y * z, x * z, x * x, y * y]
    field = sum(rng.uniform(-1, 1) * t for t in terms)
    field = 1.0 + bias * field / max(float(np.abs(field).max()), 1e-6)
    out = slices.astype(np.float32) * field[..., None].astype(np.float32)
    if noise_sd:
        out += rng.normal(0.0, noise_sd, out.shape).astype(np.float32)
    head = slices.max(axis=-1, keepdims=True) > 0
    return np.where(head, np.clip(np.rint(out), 0, 255), 0).astype(np.uint8)


def random_motion(rng: np.random.Generator, max_deg: float = 10.0, max_mm: float = 10.0
                  ) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """A random head movement: each angle uniform in +-max_deg, a translation of uniform direction and length <= max_mm."""
    angles = tuple(float(a) for a in rng.uniform(-max_deg, max_deg, 3))
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    shift = tuple(float(v) for v in direction * rng.uniform(0.0, max_mm))
    return angles, shift  # type: ignore[return-value]


@dataclass(frozen=True)
class TransformError:
    """How far a found baseline -> follow-up transform is from the truth, at the tumour."""

    rotation_deg: float  # angle of R_found R_true^T
    mean_mm: float  # over the baseline tumour's voxels: |T_found(p) - T_true(p)|
    max_mm: float


def transform_error(found: np.ndarray, true: np.ndarray, points: np.ndarray) -> TransformError:
    """Compare two (4, 4) baseline -> follow-up matrices at ``points`` (N, 3) mm (e.g. the tumour's voxels)."""
    if len(points) == 0:
        raise SyntheticError("no points to compare the transforms at.")
    a = points @ found[:3, :3].T + found[:3, 3]
    b = points @ true[:3, :3].T + true[:3, 3]
    dist = np.linalg.norm(a - b, axis=1)
    return TransformError(rotation_deg=rotation_angle_deg(found[:3, :3] @ true[:3, :3].T), mean_mm=float(dist.mean()),
                          max_mm=float(dist.max()))
