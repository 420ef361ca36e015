"""Orientation letters drawn into a slice picture: one at each edge, in a colour no MRI or mask overlay uses."""

from __future__ import annotations

import numpy as np
import pytest

from lggdemo.data.directions import KAGGLE_EDGES, EdgeLetters
from lggdemo.teach.errors import ERROR_COLOURS
from lggdemo.viz.orientation import LETTER_COLOUR, letter_pixels, with_letters
from lggdemo.viz.overlay import MASK_COLOUR, overlay_mask


def _lettered(picture: np.ndarray) -> np.ndarray:
    return letter_pixels(picture)


def test_the_letters_colour_is_found_in_no_mri_or_overlay() -> None:
    grey = np.repeat(np.arange(256, dtype=np.uint8)[:, None, None], 3, axis=2).repeat(4, axis=1)
    assert not letter_pixels(grey).any()
    overlays = [(MASK_COLOUR, 0.45), ((64, 200, 64), 0.45), ((200, 60, 255), 0.9), (MASK_COLOUR, 1.0),
                *[(colour, alpha) for colour in ERROR_COLOURS.values() for alpha in (0.5, 1.0)]]
    for colour, alpha in overlays:
        assert not letter_pixels(overlay_mask(grey, np.ones(grey.shape[:2]), alpha=alpha, colour=colour)).any()
    assert letter_pixels(np.array([[LETTER_COLOUR]], np.uint8)).all()


def test_each_edge_gets_its_letter_and_the_input_is_untouched() -> None:
    base = np.full((256, 256, 3), 90, np.uint8)
    out = with_letters(base)
    assert out.shape == base.shape and (base == 90).all()
    marked = _lettered(out)
    assert marked[:30, 110:146].any() and marked[-30:, 110:146].any()  # top and bottom, centred
    assert marked[110:146, :30].any() and marked[110:146, -30:].any()  # left and right, centred
    assert not marked[40:216, 40:216].any()  # the anatomy in the middle stays as it was
    assert (out[40:216, 40:216] == 90).all()


def test_letters_follow_the_edges_they_are_given() -> None:
    base = np.zeros((256, 256, 3), np.uint8)
    kaggle = _lettered(with_letters(base, KAGGLE_EDGES))
    swapped = _lettered(with_letters(base, EdgeLetters(top="P", bottom="A", left="L", right="R")))
    assert not np.array_equal(kaggle[:30], swapped[:30])  # "A" and "P" are different glyphs
    assert np.array_equal(_lettered(with_letters(base, EdgeLetters("A", "P", "R", "L")))[:30], kaggle[:30])


def test_small_pictures_get_readable_letters_and_bad_shapes_are_refused() -> None:
    small = with_letters(np.zeros((64, 64, 3), np.uint8))
    assert _lettered(small).sum() > 20
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        with_letters(np.zeros((64, 64), np.uint8))
