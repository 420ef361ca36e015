"""Slices without any head go through no network and get an empty mask -- and that changes no mask: exact on the
phantoms with air slices added, and on every patient of ../shared with the bundled weights (slow)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lggdemo.data.arrays import slice_arrays
from lggdemo.data.kaggle import scan_dataset
from lggdemo.metrics.segmentation import dice
from lggdemo.models.engine import load_engine
from lggdemo.models.forward import predict_patient_masks, segment_slices
from lggdemo.models.postprocess import keep_main_components_by_patient
from lggdemo.models.preprocess import BACKGROUND_LEVEL, slices_with_head
from lggdemo.models.weights import BUNDLED_DIR, load_segmentation

ROOT = Path(__file__).resolve().parents[2]
MATERIALIZE = ROOT.parent / "shared" / "lgg" / "materialize.py"


def _air(n: int, seed: int = 0) -> np.ndarray:
    """Slices of air as scanners store it: dark noise, never brighter than the background level."""
    return np.random.default_rng(seed).integers(0, BACKGROUND_LEVEL + 1, (n, 256, 256, 3), dtype=np.uint8)


def test_only_slices_without_any_head_pixel_are_left_out() -> None:
    images = _air(4)
    images[1, 100, 100, 2] = BACKGROUND_LEVEL + 1  # one pixel of head in one channel is enough to run the slice
    images[2] = 0
    images[3, :, :, 1] = 200
    assert slices_with_head(images).tolist() == [False, True, False, True]
    assert slices_with_head(np.zeros((0, 256, 256, 3), np.uint8)).shape == (0,)
    with pytest.raises(ValueError, match="expected slices"):
        slices_with_head(np.zeros((256, 256, 3), np.uint8))


def _phantom_with_air(root: Path) -> tuple[np.ndarray, list[str]]:
    """A phantom patient with air below the skull base (3 slices) and above the vertex (2)."""
    index = scan_dataset(root)
    arrays = slice_arrays(index, 256)
    pid = index.patient_ids[0]
    head = arrays.images[arrays.patient_ids == pid]
    assert slices_with_head(head).all()
    images = np.concatenate([_air(3, 1), head, _air(2, 2)])
    return images, [pid] * len(images)


def test_air_slices_reach_no_network_and_the_others_are_untouched(synthetic_root: Path, tiny_weights: Path) -> None:
    images, _ = _phantom_with_air(synthetic_root)
    model, cfg = load_segmentation(tiny_weights)
    per_slice = 2 if cfg.flip_tta else 1
    seen: list[int] = []
    model.register_forward_pre_hook(lambda _m, args: seen.append(len(args[0])))
    skipped, p_skip = segment_slices(model, cfg, images, torch.device("cpu"), 8, probabilities=True)
    assert sum(seen) == per_slice * (len(images) - 5)
    seen.clear()
    full, p_full = segment_slices(model, cfg, images, torch.device("cpu"), 8, probabilities=True, skip_air=False)
    assert sum(seen) == per_slice * len(images)
    assert p_skip is not None and p_full is not None
    assert not skipped[:3].any() and not skipped[-2:].any() and not p_skip[:3].any() and not p_skip[-2:].any()
    assert np.array_equal(skipped[3:-2], full[3:-2])
    assert np.allclose(p_skip[3:-2], p_full[3:-2], atol=1e-5)


def test_skipping_air_is_exact_with_the_bundled_weights_on_a_phantom(synthetic_root: Path) -> None:
    """Trained weights draw nothing on air: the whole-patient masks with the skip equal those without it."""
    if not (BUNDLED_DIR / "model_card.json").is_file():
        pytest.skip("no bundled weights in this checkout")
    images, ids = _phantom_with_air(synthetic_root)
    model, cfg = load_segmentation(BUNDLED_DIR)
    full_2d = segment_slices(model, cfg, images, skip_air=False)[0]
    assert not full_2d[:3].any() and not full_2d[-2:].any()
    with_skip = predict_patient_masks(model, cfg, images, ids)
    assert np.array_equal(with_skip, predict_patient_masks(model, cfg, images, ids, skip_air=False))


@pytest.fixture(scope="module")
def every_real_patient(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every patient of ../shared/lgg, materialised (the session's real_root holds only the first five)."""
    if not MATERIALIZE.is_file():
        pytest.skip(f"real LGG data not available ({MATERIALIZE} missing)")
    dest = tmp_path_factory.mktemp("all-real")
    subprocess.run([sys.executable, str(MATERIALIZE), str(dest)], check=True, capture_output=True)
    return dest / "kaggle_3m"


@pytest.mark.slow
def test_skipping_air_is_exact_on_every_real_patient(every_real_patient: Path) -> None:
    """The bundled weights on every patient of ../shared, as the app and the evaluator make whole-patient masks.

    Slices go through the network one by one (eval mode: no slice sees another), so the skip changes a whole-patient
    mask only if the network would draw tumour on a slice it skips. Every skipped slice of every patient is therefore
    run through the network and must come out empty; the patient with the most skipped slices is also checked end to
    end, with the skip and without it, voxel for voxel. (Running all 3,152 slices twice took six minutes of CI.)
    """
    if not (BUNDLED_DIR / "model_card.json").is_file():
        pytest.skip("no bundled weights in this checkout")
    index = scan_dataset(every_real_patient)
    arrays = slice_arrays(index, 256)
    engine = load_engine(BUNDLED_DIR, torch.device("cpu"), models=("segmentation",))
    _, cfg = load_segmentation(BUNDLED_DIR)
    air = ~slices_with_head(arrays.images)
    assert len(index.patient_ids) >= 80 and air.any()
    drawn = segment_slices(engine, cfg, arrays.images[air], skip_air=False)[0].reshape(int(air.sum()), -1).any(axis=1)
    assert not drawn.any(), f"the full run draws tumour on slices without head of {set(arrays.patient_ids[air][drawn])}"

    ids_with_air, counts = np.unique(arrays.patient_ids[air], return_counts=True)
    sel = arrays.patient_ids == ids_with_air[np.argmax(counts)]
    images, ids = arrays.images[sel], arrays.patient_ids[sel]
    with_skip = predict_patient_masks(engine, cfg, images, ids)
    without = keep_main_components_by_patient(segment_slices(engine, cfg, images, skip_air=False)[0], ids)
    assert np.array_equal(with_skip, without), f"Dice {dice(with_skip, without):.6f}"
