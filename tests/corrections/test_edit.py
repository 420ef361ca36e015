"""Mask editing without a browser: strokes, deleting a piece, undo/reset, and reading the canvas's drawing."""

from __future__ import annotations

import numpy as np
import pytest

from lggdemo.corrections import (
    MAX_UNDO,
    Click,
    EditError,
    EditHistory,
    Stroke,
    component_at,
    delete_component,
    drawing_mode,
    edits_from_drawing,
    paint,
    path_points,
    stroke_footprint,
)


def empty(n: int = 32) -> np.ndarray:
    return np.zeros((n, n), np.uint8)


def test_a_point_is_a_disc_of_the_radius() -> None:
    foot = stroke_footprint((32, 32), [(10, 12)], 3)
    rows, cols = np.nonzero(foot)
    assert foot[12, 10] and foot[12, 13] and foot[15, 10] and not foot[12, 14] and not foot[15, 13]
    assert ((cols - 10) ** 2 + (rows - 12) ** 2 <= 9).all()
    assert foot.sum() == 29  # the lattice points of a radius-3 disc


def test_a_stroke_paints_along_the_whole_polyline() -> None:
    out = paint(empty(), [(2, 5), (28, 5), (28, 25)], 1)
    assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 1}
    assert out[5, 2:29].all() and out[5:26, 28].all()  # both segments, corners included
    assert not out[15, 15] and not out[8, 10]  # nothing off the path
    assert out[4, 15] and out[6, 15] and not out[7, 15]  # width 2r + 1 across a horizontal segment


def test_eraser_clears_and_leaves_the_rest() -> None:
    full = np.ones((20, 20), np.uint8)
    out = paint(full, [(0, 10), (19, 10)], 2, erase=True)
    assert not out[8:13].any() and out[:8].all() and out[13:].all()
    assert full.all()  # the input is never changed


def test_stroke_running_off_the_slice_is_clipped_but_one_wholly_outside_is_refused() -> None:
    out = paint(empty(), [(-5, 10), (5, 10)], 1)
    assert out[10, 0:6].all()
    with pytest.raises(EditError, match="outside"):
        paint(empty(), [(100, 100), (120, 120)], 2)
    with pytest.raises(EditError, match="radius"):
        paint(empty(), [(5, 5)], 0)
    with pytest.raises(EditError, match="2D"):
        paint(np.zeros((4, 4, 3)), [(1, 1)], 1)


def two_pieces() -> np.ndarray:
    m = empty()
    m[2:8, 2:8] = 1
    m[20:30, 20:30] = 1
    m[8, 8] = 1  # touches the first piece diagonally: 8-connected, the same piece
    return m


def test_clicking_a_piece_deletes_only_it() -> None:
    m = two_pieces()
    out = delete_component(m, (25, 25))
    assert not out[20:30, 20:30].any() and out[2:8, 2:8].all() and out[8, 8] == 1
    out = delete_component(m, (4, 4))
    assert out.sum() == 100 and out[8, 8] == 0  # the diagonal pixel went with its piece


def test_a_click_just_beside_a_piece_counts_and_one_far_away_changes_nothing() -> None:
    m = two_pieces()
    assert component_at(m, (18.5, 25)).sum() == 100  # 1.5 px off the edge
    assert np.array_equal(delete_component(m, (15, 15)), m)
    with pytest.raises(EditError, match="outside"):
        delete_component(m, (40, 3))


def test_history_undo_reset_and_no_op_edits() -> None:
    model = two_pieces()
    h = EditHistory.start(model)
    assert not h.can_undo and not h.edited
    h1 = h.apply(Stroke(((10, 15), (15, 15)), 1.0))
    h2 = h1.apply(Click((25, 25)))
    assert h2.n_edits == 2 and h2.edited and h2.current[15, 12] == 1 and not h2.current[25, 25]
    assert np.array_equal(h2.undo().current, h1.current)
    assert np.array_equal(h2.undo().undo().current, model)
    assert h2.undo().undo().undo().current is h.current  # nothing left to undo: unchanged
    assert h2.apply(Click((15, 2))) is h2  # a click on nothing is not an undo step
    reset = h2.reset()
    assert np.array_equal(reset.current, model) and not reset.can_undo
    assert np.array_equal(h.current, model)  # histories are immutable: the first one is as it was
    with pytest.raises(ValueError):
        h2.current[0, 0] = 1  # the stored states are read-only


def test_history_refuses_a_mask_of_another_slice_and_keeps_the_original_when_long() -> None:
    h = EditHistory.start(empty(32))
    with pytest.raises(EditError, match="32×32 slice, but this mask is 16×16"):
        h.push(np.ones((16, 16)))
    for i in range(MAX_UNDO + 5):
        h = h.apply(Stroke(((i % 30, 1 + 3 * (i // 30)),), 0.5))  # a new pixel each time
    assert len(h.states) == MAX_UNDO + 1 and h.n_edits == MAX_UNDO + 5 and not h.original.any()


def test_reading_a_fabric_drawing() -> None:
    drawing = {"objects": [
        {"type": "Path", "strokeWidth": 8, "path": [["M", 10, 20], ["Q", 12, 20, 14, 21], ["L", 40, 22]]},
        {"type": "Circle", "left": 96.0, "top": 50.0, "radius": 3, "strokeWidth": 2, "originX": "left",
         "originY": "center"},
        {"type": "Rect", "left": 1, "top": 1},
    ]}
    assert path_points(drawing["objects"][0]["path"]) == [(10, 20), (12, 20), (14, 21), (40, 22)]
    edits = edits_from_drawing(drawing, tool="Eraser", scale=2.0)
    assert edits == [Stroke(((5, 10), (6, 10), (7, 10.5), (20, 11)), 2.0, erase=True), Click((50.0, 25.0))]
    assert edits_from_drawing(drawing, tool="Brush", scale=2.0, skip=1) == [Click((50.0, 25.0))]
    assert edits_from_drawing(None, tool="Brush", scale=1.0) == []
    assert drawing_mode("Brush") == "freedraw" and drawing_mode("Delete a piece") == "point"
    with pytest.raises(ValueError):
        drawing_mode("lasso")
