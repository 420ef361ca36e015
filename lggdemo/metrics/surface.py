"""Surface metrics of a mask against a reference, in mm: MONAI's implementations, with empty masks made explicit.

All four compare the masks' *surfaces* (MONAI: the voxels of each mask that touch its outside, by scipy's binary
erosion; distances between their centres, exact Euclidean at the given anisotropic spacing), where Dice compares
volumes: a mask can have a good Dice and a stray blob 40 mm away, which only the Hausdorff distance sees.

- ``hd95_mm``: 95th percentile Hausdorff distance, the larger of the two directed 95th percentiles
  (``monai.metrics.compute_hausdorff_distance(percentile=95)``).
- ``assd_mm``: average symmetric surface distance, the mean over both surfaces' points of the distance to the
  other surface (``compute_average_surface_distance(symmetric=True)``).
- ``surface_dice_*``: normalised surface Dice (Nikolov et al. 2021): the fraction of both surfaces lying within
  the tolerance of the other (``compute_surface_dice``, without sub-voxel areas).

Empty masks, which MONAI answers with inf, nan and a warning, are decided here:
- both empty: perfect agreement (HD95 = ASSD = 0 mm, surface Dice = 1), as the project's Dice counts it 1;
- one empty: there is no surface to measure a distance to, so HD95 and ASSD are **None** (undefined; JSON null,
  reported as a count beside the cohort's statistics, never averaged in), and surface Dice is 0.

MONAI is imported inside the functions: importing it costs about 10 s, which the app must not pay at start-up.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np

TOLERANCES_MM = (1.0, 2.0)


@dataclass(frozen=True)
class SurfaceMetrics:
    """One mask against its reference; distances in mm (in voxel units when no spacing was given)."""

    hd95_mm: float | None
    assd_mm: float | None
    surface_dice_1mm: float
    surface_dice_2mm: float
    empty: str  # "none" | "both" | "prediction" | "reference": which side had no voxel

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@contextmanager
def _quiet() -> Iterator[None]:
    """MONAI 1.6 warns about its own deprecated argument (``get_mask_edges``) and about one-channel inputs it
    calls "not one-hot"; neither is ours to act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


def _batch(mask: np.ndarray) -> object:
    import torch

    return torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]


def _check(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None) -> tuple[np.ndarray, np.ndarray]:
    p, r = np.asarray(pred) > 0, np.asarray(ref) > 0
    if p.shape != r.shape:
        raise ValueError(f"prediction {p.shape} and reference {r.shape} differ in shape")
    if spacing is not None and len(spacing) != p.ndim:
        raise ValueError(f"spacing {tuple(spacing)} does not have one value per axis of {p.shape}")
    return p, r


def hd95(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None) -> float | None:
    """95th percentile symmetric Hausdorff distance in mm (0 both empty; None one empty)."""
    p, r = _check(pred, ref, spacing)
    if not p.any() or not r.any():
        return 0.0 if not p.any() and not r.any() else None
    from monai.metrics import compute_hausdorff_distance

    with _quiet():
        out = compute_hausdorff_distance(_batch(p), _batch(r), include_background=True, percentile=95,
                                         spacing=None if spacing is None else list(map(float, spacing)))
    return float(out.reshape(-1)[0])


def assd(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None) -> float | None:
    """Average symmetric surface distance in mm (0 both empty; None one empty)."""
    p, r = _check(pred, ref, spacing)
    if not p.any() or not r.any():
        return 0.0 if not p.any() and not r.any() else None
    from monai.metrics import compute_average_surface_distance

    with _quiet():
        out = compute_average_surface_distance(_batch(p), _batch(r), include_background=True, symmetric=True,
                                               spacing=None if spacing is None else list(map(float, spacing)))
    return float(out.reshape(-1)[0])


def surface_dice(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None,
                 tolerances_mm: Sequence[float] = TOLERANCES_MM) -> list[float]:
    """Normalised surface Dice at each tolerance in mm (1 both empty; 0 one empty)."""
    p, r = _check(pred, ref, spacing)
    if not p.any() or not r.any():
        return [1.0 if not p.any() and not r.any() else 0.0 for _ in tolerances_mm]
    from monai.metrics import compute_surface_dice

    out = []
    with _quiet():
        for tol in tolerances_mm:
            v = compute_surface_dice(_batch(p), _batch(r), class_thresholds=[float(tol)], include_background=True,
                                     spacing=None if spacing is None else list(map(float, spacing)))
            out.append(float(v.reshape(-1)[0]))
    return out


def surface_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None) -> SurfaceMetrics:
    """All four at once for masks of the same shape (2D or 3D); ``spacing`` one mm value per axis, or None
    for voxel units.

    The surfaces and their distances are MONAI's (``monai.metrics.utils.get_edge_surface_distance``, symmetric),
    computed once and reduced exactly as ``compute_hausdorff_distance(percentile=95)``,
    ``compute_average_surface_distance(symmetric=True)`` and ``compute_surface_dice`` reduce them (the tests hold
    the two equal): those three would each find the same edges and distances again, four times the work.
    """
    p, r = _check(pred, ref, spacing)
    empty = {(False, False): "both", (False, True): "prediction", (True, False): "reference"}.get(
        (bool(p.any()), bool(r.any())), "none")
    if empty != "none":
        sd1, sd2 = surface_dice(p, r, spacing, TOLERANCES_MM)
        return SurfaceMetrics(hd95(p, r, spacing), assd(p, r, spacing), sd1, sd2, empty)
    import torch
    from monai.metrics.utils import get_edge_surface_distance

    with _quiet():
        _, distances, _ = get_edge_surface_distance(
            _batch(p)[0, 0], _batch(r)[0, 0], distance_metric="euclidean", symmetric=True,  # type: ignore[index]
            spacing=None if spacing is None else list(map(float, spacing)))
    d_pred, d_ref = (d.float() for d in distances)
    hd = max(float(torch.quantile(d, 0.95)) for d in (d_pred, d_ref))
    mean = float(torch.cat([d_pred, d_ref]).mean())
    n = len(d_pred) + len(d_ref)
    nsd = [float((torch.sum(d_pred <= tol) + torch.sum(d_ref <= tol)) / n) for tol in TOLERANCES_MM]
    return SurfaceMetrics(hd, mean, nsd[0], nsd[1], empty)
