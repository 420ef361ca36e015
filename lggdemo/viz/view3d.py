"""The 3D view of a whole patient: the tumour surface inside a translucent head, rotatable (plotly).

Surfaces come from ``skimage.measure.marching_cubes`` at the voxel spacing, so a tumour looks as long as
it is. The head is the same background rule as everywhere else (``inference.predictor.head_mask``: any channel brighter
than the normalisation's background level), holes filled, downsampled in-plane and lightly smoothed:
it is context, not anatomy, and must build in well under a second for an 88-slice patient (measured by
``python -m lggdemo.bench --infer``). The tumour is meshed at full resolution inside its bounding box.

Axes follow the display layout's directions, named from the data (``axcodes``: the direction each of the
slice, row and column axes points to; ``patient.orientation.display_axcodes``): in the kaggle_3m layout x runs
from the patient's right to left, y from anterior to posterior and z (up) from inferior to superior, in mm. The
letters R/L, A/P, S/I sit at the ends of the axes, so "up" on the screen is the top of the head.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from scipy import ndimage

from lggdemo.data.directions import KAGGLE_AXCODES, OPPOSITE, axis_words
from lggdemo.models.preprocess import head_pixels

#: Without a recorded spacing, slices are drawn this many pixels apart (kaggle_3m: ~0.5-1 mm pixels, 2.5-5 mm
#: slices). Said on the figure.
ASSUMED_SLICE_RATIO = 4.0
HEAD_DOWNSAMPLE = 4  # in-plane step of the head mesh
TUMOUR_COLOUR = "#E45756"
HEAD_COLOUR = "#9DB4CC"


@dataclass(frozen=True)
class Mesh:
    vertices: np.ndarray  # (V, 3) in (slice, row, column) mm
    faces: np.ndarray  # (F, 3)


def surface(mask: np.ndarray, spacing: tuple[float, float, float], *, level: float = 0.5, step: int = 1) -> Mesh | None:
    """Marching-cubes surface of a (S, H, W) 0/1 or [0, 1] array at ``spacing``; None when it is empty."""
    from skimage.measure import marching_cubes

    arr = np.asarray(mask, np.float32)
    if arr.max(initial=0) <= level or arr.min(initial=1) >= level:
        return None
    padded = np.pad(arr, 1)  # closed surfaces at the volume's edges
    verts, faces, _normals, _values = marching_cubes(padded, level=level, spacing=spacing, step_size=step,
                                                     allow_degenerate=False)
    return Mesh(verts - np.asarray(spacing, np.float32), faces)


def head_volume(slices: np.ndarray, downsample: int = HEAD_DOWNSAMPLE) -> np.ndarray:
    """(S, H, W, 3) uint8 -> (S, H/d, W/d) float32 head mask, holes filled and smoothed (values in [0, 1])."""
    small = head_pixels(slices[:, ::downsample, ::downsample])
    filled = np.stack([ndimage.binary_fill_holes(s) for s in small])
    return ndimage.gaussian_filter(filled.astype(np.float32), sigma=(0.7, 1.0, 1.0))


def _mesh_trace(mesh: Mesh, name: str, colour: str, opacity: float, offset: np.ndarray, up: float) -> go.Mesh3d:
    s, r, c = (mesh.vertices - offset).T
    return go.Mesh3d(x=c, y=r, z=up * s, i=mesh.faces[:, 0], j=mesh.faces[:, 1], k=mesh.faces[:, 2], name=name,
                     color=colour, opacity=opacity, flatshading=False, showlegend=True, hoverinfo="name",
                     lighting=dict(ambient=0.5, diffuse=0.8, specular=0.2))


def _axis_title(code: str) -> str:
    return f"{axis_words(code)} ({OPPOSITE[code]} → {code})"


def _letters(vertices: np.ndarray, up: float, axcodes: tuple[str, str, str]) -> list[dict[str, object]]:
    """Scene annotations: the patient direction at both ends of each axis, just outside the head's box."""
    s, r, c = vertices.T
    lo, hi = np.array([c.min(), r.min(), (up * s).min()]), np.array([c.max(), r.max(), (up * s).max()])
    mid, pad = (lo + hi) / 2, 0.12 * (hi - lo) + 5
    codes = (axcodes[2], axcodes[1], axcodes[0] if up > 0 else OPPOSITE[axcodes[0]])  # plot x, y, z point to
    out = []
    for axis, code in enumerate(codes):
        for end, letter in ((lo[axis] - pad[axis], OPPOSITE[code]), (hi[axis] + pad[axis], code)):
            point = mid.copy()
            point[axis] = end
            out.append(dict(x=float(point[0]), y=float(point[1]), z=float(point[2]), text=f"<b>{letter}</b>",
                            showarrow=False, font=dict(size=16, color="#F2C14E"), bgcolor="rgba(0,0,0,0.55)"))
    return out


def figure_3d(slices: np.ndarray, mask: np.ndarray, spacing: tuple[float, float, float] | None, *,
              title: str = "", axcodes: tuple[str, str, str] = KAGGLE_AXCODES) -> go.Figure:
    """The rotatable figure: translucent head, opaque tumour; ``spacing`` (slice, row, column) mm or None;
    ``axcodes`` where the slice, row and column axes point (the volume's, from its grid)."""
    known = spacing is not None
    up = 1.0 if axcodes[0] == "S" else -1.0 if axcodes[0] == "I" else 1.0  # superior is up on the screen
    sp = tuple(float(v) for v in spacing) if known else (ASSUMED_SLICE_RATIO, 1.0, 1.0)
    fig = go.Figure()
    head = surface(head_volume(slices), (sp[0], sp[1] * HEAD_DOWNSAMPLE, sp[2] * HEAD_DOWNSAMPLE), step=1)
    centre = np.zeros(3, np.float32)
    if head is not None:
        centre = head.vertices.mean(axis=0)
        fig.add_trace(_mesh_trace(head, "head", HEAD_COLOUR, 0.12, centre, up))
    m = np.asarray(mask) > 0
    if m.any():
        lo = np.maximum(np.argwhere(m).min(axis=0) - 1, 0)
        hi = np.argwhere(m).max(axis=0) + 2
        box = m[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].astype(np.float32)
        # a light smoothing, less across thick slices: the surface without the voxel staircase, same extent
        smooth = ndimage.gaussian_filter(box, sigma=(0.5, 1.0, 1.0))
        tumour = surface(smooth if smooth.max() > 0.5 else box, sp)
        if tumour is not None:
            shifted = Mesh(tumour.vertices + lo * np.asarray(sp, np.float32), tumour.faces)
            fig.add_trace(_mesh_trace(shifted, "tumour (predicted)", TUMOUR_COLOUR, 1.0, centre, up))
    unit = "mm" if known else f"px (spacing unknown: slices drawn {ASSUMED_SLICE_RATIO:g} px apart)"
    fig.update_layout(
        title=title or None, height=520, margin=dict(l=0, r=0, t=40 if title else 10, b=0),
        legend=dict(orientation="h", y=0.02),
        scene=dict(aspectmode="data", xaxis_title=f"{_axis_title(axcodes[2])}, {unit}",
                   yaxis_title=_axis_title(axcodes[1]),
                   zaxis_title=_axis_title(axcodes[0] if up > 0 else OPPOSITE[axcodes[0]]),
                   camera=dict(eye=dict(x=1.4, y=-1.4, z=0.8), up=dict(x=0, y=0, z=1)),
                   annotations=_letters(head.vertices - centre, up, axcodes) if head is not None else []),
    )
    return fig
