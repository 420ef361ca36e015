"""The 3D view: a head and a tumour surface, at the voxel spacing."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from lggdemo.viz.view3d import ASSUMED_SLICE_RATIO, figure_3d, surface


def _head(n: int = 12) -> np.ndarray:
    yy, xx = np.mgrid[0:256, 0:256]
    disc = ((yy - 128) ** 2 + (xx - 128) ** 2 < 100**2)
    slices = np.zeros((n, 256, 256, 3), np.uint8)
    slices[:, disc] = 120
    return slices


def test_surface_respects_spacing() -> None:
    box = np.zeros((10, 20, 20), np.uint8)
    box[2:6, 5:15, 5:10] = 1  # 4 slices, 10 rows, 5 columns
    mesh = surface(box, (3.0, 0.5, 2.0))
    assert mesh is not None
    extent = mesh.vertices.max(axis=0) - mesh.vertices.min(axis=0)
    # marching cubes at 0.5 puts the surface half a voxel inside the outer voxels' centres... and outside the inner ones
    assert np.allclose(extent, [4 * 3.0, 10 * 0.5, 5 * 2.0], atol=np.array([3.0, 0.5, 2.0]))
    assert surface(np.zeros((4, 4, 4)), (1.0, 1.0, 1.0)) is None


def test_figure_has_head_and_tumour_and_says_when_spacing_is_unknown() -> None:
    slices = _head()
    mask = np.zeros(slices.shape[:3], np.uint8)
    mask[4:8, 100:140, 110:150] = 1
    fig = figure_3d(slices, mask, (2.5, 0.9, 0.9), title="p1")
    assert isinstance(fig, go.Figure) and [t.name for t in fig.data] == ["head", "tumour (predicted)"]
    tumour = fig.data[1]
    assert np.ptp(np.asarray(tumour.z)) > 2.5 * 2 and np.ptp(np.asarray(tumour.x)) < 40 * 0.9 + 2
    assert "mm" in fig.layout.scene.xaxis.title.text
    unknown = figure_3d(slices, np.zeros_like(mask), None)
    assert [t.name for t in unknown.data] == ["head"]
    assert f"{ASSUMED_SLICE_RATIO:g} px apart" in unknown.layout.scene.xaxis.title.text


def test_superior_is_up_and_every_axis_end_has_its_letter() -> None:
    slices = _head(20)
    mask = np.zeros(slices.shape[:3], np.uint8)
    mask[15:19, 60:90, 40:70] = 1  # high slices (superior), front rows (anterior), left columns (patient's right)
    fig = figure_3d(slices, mask, (2.5, 0.9, 0.9))
    head_z, tumour_z = (np.asarray(t.z) for t in fig.data)
    assert tumour_z.mean() > head_z.mean() + 10  # slice numbers run inferior -> superior: up on the screen
    assert "inferior → superior" in fig.layout.scene.zaxis.title.text
    assert "right → left" in fig.layout.scene.xaxis.title.text
    letters = {a.text.strip("<b>/") for a in fig.layout.scene.annotations}
    assert letters == set("RLAPSI")
    top = max(fig.layout.scene.annotations, key=lambda a: a.z)
    assert "S" in top.text
    # a volume whose slices ran superior -> inferior would be drawn the other way up
    flipped = figure_3d(slices, mask, (2.5, 0.9, 0.9), axcodes=("I", "P", "L"))
    head_z, tumour_z = (np.asarray(t.z) for t in flipped.data)
    assert tumour_z.mean() < head_z.mean() - 10
