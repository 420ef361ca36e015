"""The diameters and the mm scale bar are drawn where and as long as the numbers say."""

from __future__ import annotations

import numpy as np
import pytest

from lggdemo.viz.measurements import LONGEST_COLOUR, Line, draw_diameters, scale_bar_mm


def _white_run(picture: np.ndarray) -> tuple[int, int]:
    """(row, length) of the longest run of pure white pixels in any row of ``picture`` (the bar)."""
    white = (picture == 255).all(axis=2)
    best = (0, 0)
    for r, line in enumerate(white):
        idx = np.flatnonzero(line)
        if len(idx):
            runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
            longest = max(len(run) for run in runs)
            best = max(best, (longest, r), key=lambda t: t[0]) if best[0] else (longest, r)
    return best[1], best[0]


@pytest.mark.parametrize(("mm_per_px", "expected_mm"), [(0.75, 20), (0.5, 20), (1.0, 50), (0.2, 10)])
def test_scale_bar_is_as_long_as_it_says(mm_per_px: float, expected_mm: int) -> None:
    assert scale_bar_mm(256, mm_per_px) == expected_mm
    picture = draw_diameters(np.zeros((256, 256, 3), np.uint8), [], mm_per_px, scale=2)
    assert picture.shape == (512, 512, 3)
    row, length = _white_run(picture)
    assert row > 400  # at the bottom
    assert length == pytest.approx(expected_mm / mm_per_px * 2, abs=2)


def test_lines_are_drawn_between_their_ends_and_no_bar_without_spacing() -> None:
    line = Line((40.0, 50.0), (40.0, 150.0), "75.0 mm", LONGEST_COLOUR)
    picture = draw_diameters(np.zeros((256, 256, 3), np.uint8), [line], None, scale=2)
    yellow = (np.abs(picture.astype(int) - LONGEST_COLOUR).max(axis=2) < 10)
    rows, cols = np.nonzero(yellow[:, :320])  # the line, left of its label
    assert abs(np.median(rows) - 81) <= 2  # row 40's centre at scale 2
    assert cols.min() <= 101 + 4 and cols.max() >= 301 - 4
    assert not (picture == 255).all(axis=2)[400:].any()  # no scale bar without a spacing
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        draw_diameters(np.zeros((4, 4), np.uint8), [], 1.0)
