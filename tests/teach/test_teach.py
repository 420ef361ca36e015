"""The teaching layer's numbers: error counts and Dice/IoU on hand-built masks, the threshold path against the
model's own mask path, and the uncertainty map's range and its zero for an augmentation-invariant model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lggdemo.data.kaggle import load_image, load_mask, scan_dataset
from lggdemo.inference.predictor import Predictor
from lggdemo.metrics.segmentation import dice
from lggdemo.models.forward import segment_slices
from lggdemo.models.networks import SegConfig, build_segmentation
from lggdemo.models.weights import BUNDLED_DIR, is_complete
from lggdemo.teach import (
    ERROR_COLOURS,
    FN,
    FP,
    TN,
    TP,
    TeachInputError,
    dice_breakdown,
    draw_errors,
    error_map,
    input_channel_images,
    masks_at,
    model_view,
    tta_uncertainty,
)

CPU = torch.device("cpu")


def _pair() -> tuple[np.ndarray, np.ndarray]:
    """A predicted 2x3 block and a true 1x5 row on an 8x8 grid: they share 3 pixels."""
    pred = np.zeros((8, 8), np.uint8)
    truth = np.zeros((8, 8), np.uint8)
    pred[2:4, 1:4] = 1  # 6 px: (2,1) (2,2) (2,3) (3,1) (3,2) (3,3)
    truth[2, 1:6] = 1  # 5 px: (2,1)..(2,5); shared with pred: (2,1) (2,2) (2,3)
    return pred, truth


def test_error_map_counts_and_labels() -> None:
    pred, truth = _pair()
    errors = error_map(pred, truth)
    assert (errors.counts.tp, errors.counts.fp, errors.counts.fn, errors.counts.tn) == (3, 3, 2, 56)
    assert errors.labels[2, 1] == TP and errors.labels[3, 1] == FP and errors.labels[2, 5] == FN
    assert errors.labels[0, 0] == TN
    assert errors.counts.of(FP) == 3


def test_dice_breakdown_fills_in_the_formula() -> None:
    pred, truth = _pair()
    d = dice_breakdown(pred, truth)
    assert (d.intersection, d.predicted, d.truth, d.union) == (3, 6, 5, 8)
    assert d.dice == pytest.approx(6 / 11) and d.dice == dice(pred, truth)
    assert d.iou == pytest.approx(3 / 8)
    assert d.iou == pytest.approx(d.dice / (2 - d.dice))
    assert "2·3 / (6 + 5) = 6 / 11 = 0.545" in d.dice_formula()
    assert "3 / 8 = 0.375" in d.iou_formula()


def test_empty_masks_follow_the_evaluator_convention() -> None:
    empty = np.zeros((4, 4), np.uint8)
    d = dice_breakdown(empty, empty)
    assert d.dice == 1.0 == dice(empty, empty) and d.iou == 1.0 and d.both_empty
    assert "1.000" in d.dice_formula()
    truth = empty.copy()
    truth[0, :] = 1
    missed = dice_breakdown(empty, truth)
    assert missed.dice == 0.0 and missed.iou == 0.0 and error_map(empty, truth).counts.fn == 4
    with pytest.raises(TeachInputError, match="one shape"):
        error_map(empty, np.zeros((5, 4)))


def test_draw_errors_paints_each_kind_in_its_colour() -> None:
    pred, truth = _pair()
    base = np.zeros((8, 8, 3), np.uint8)
    picture = draw_errors(base, error_map(pred, truth), alpha=1.0)
    assert tuple(picture[2, 1]) == ERROR_COLOURS[TP]
    assert tuple(picture[3, 1]) == ERROR_COLOURS[FP]
    assert tuple(picture[2, 5]) == ERROR_COLOURS[FN]
    assert tuple(picture[0, 0]) == (0, 0, 0)


def _slices(root: Path, n: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    index = scan_dataset(root)
    out = []
    for pid in index.patient_ids:
        for rec in index.patients[pid]:
            mask = load_mask(rec)
            if mask.any():
                out.append((load_image(rec), mask))
                break
        if len(out) == n:
            break
    return out


@pytest.mark.parametrize("dataset", ["synthetic_root", "real_root"])
def test_threshold_path_is_the_models_own_path_with_the_bundled_weights(dataset: str,
                                                                         request: pytest.FixtureRequest) -> None:
    if not is_complete(BUNDLED_DIR):
        pytest.skip(f"no complete bundled weights in {BUNDLED_DIR}")
    root = request.getfixturevalue(dataset)  # real_root skips where ../shared/lgg is absent
    predictor = Predictor.from_directory(BUNDLED_DIR, "cpu")
    assert predictor.seg_config.min_component_px > 0  # the bundled model post-processes: the rule is exercised
    for image, _ in _slices(root):
        masks, probs = predictor.segment(image[None])
        view = model_view(predictor.engine, predictor.seg_config, image)
        steps = masks_at(view)
        assert steps.threshold == predictor.seg_config.threshold
        np.testing.assert_array_equal(steps.final, masks[0])
        np.testing.assert_array_equal(view.probability, probs[0])
        assert view.network_input.shape == (3, predictor.seg_config.image_size, predictor.seg_config.image_size)


def test_threshold_steps_on_a_noisy_model_identify_removed_pieces() -> None:
    """An untrained U-Net's probabilities hover near 0.5: lots of specks for the component rule to remove."""
    torch.manual_seed(0)
    config = SegConfig(encoder="resnet18", image_size=64, min_component_px=40)
    model = build_segmentation(config).eval()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
    view = model_view(model, config, image, CPU)
    own = segment_slices(model, config, image[None], CPU)[0][0]
    low = None
    for t in np.quantile(view.probability, [0.3, 0.5, 0.7]):
        steps = masks_at(view, float(t))
        np.testing.assert_array_equal(steps.removed, steps.thresholded & (1 - steps.final))
        np.testing.assert_array_equal(steps.thresholded, (view.logits > np.log(t / (1 - t))).astype(np.uint8))
        if low is not None:  # a higher threshold keeps a subset
            assert not (steps.thresholded & (1 - low)).any()
        low = steps.thresholded
    at_own = masks_at(view)
    np.testing.assert_array_equal(at_own.final, own)
    for t in np.linspace(0.3, 0.7, 9):
        steps = masks_at(view, float(t))
        if steps.removed_components:
            break
    assert steps.removed_components > 0 and steps.removed.sum() > 0
    from scipy import ndimage

    labels, n = ndimage.label(steps.removed)
    assert n == steps.removed_components
    assert all(int((labels == i).sum()) < 40 for i in range(1, n + 1))
    with pytest.raises(TeachInputError, match="between 0 and 1"):
        masks_at(view, 1.0)


def test_input_channel_images_show_the_normalised_tensor() -> None:
    config = SegConfig(encoder="resnet18", image_size=64)
    model = build_segmentation(config).eval()
    image = np.zeros((256, 256, 3), np.uint8)
    image[64:192, 64:192] = (40, 120, 200)
    image[100:120, 100:120, 1] = 250
    view = model_view(model, config, image, CPU)
    pictures = input_channel_images(view)
    assert [p.shape for p in pictures] == [(64, 64)] * 3 and all(p.dtype == np.uint8 for p in pictures)
    assert pictures[1].max() == 255 > pictures[1][32, 32]  # the bright square saturates, the rest of the head does not
    with pytest.raises(TeachInputError, match="uint8 slice"):
        model_view(model, config, image[:100], CPU)


class _Pointwise(nn.Module):
    """A 1x1 convolution: it commutes with every rotation and mirror, so the augmented views must agree."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([0.7, -1.3, 2.1]).view(1, 3, 1, 1))
            self.conv.bias.fill_(-0.4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _phantom_like() -> np.ndarray:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 80, (256, 256, 3), dtype=np.uint8)
    image[40:120, 150:220] += 120
    return image


def test_uncertainty_is_zero_for_an_augmentation_invariant_model() -> None:
    config = SegConfig(image_size=64)
    unc = tta_uncertainty(_Pointwise().eval(), config, _phantom_like(), CPU)
    assert unc.std.shape == (256, 256) and unc.n_views == 4
    assert float(unc.std.max()) < 1e-6
    assert float(unc.mean_probability.min()) < 0.2 and float(unc.mean_probability.max()) > 0.8  # not trivially flat


def test_uncertainty_of_an_orientation_sensitive_model_lies_in_range() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 5, padding=2), nn.ReLU(), nn.Conv2d(4, 1, 5, padding=2)).eval()
    with torch.no_grad():
        model[2].weight.mul_(8.0)  # push probabilities away from 0.5 so the views disagree visibly
    unc = tta_uncertainty(model, SegConfig(image_size=64), _phantom_like(), CPU)
    assert unc.std.dtype == np.float32 and unc.std.shape == (256, 256)
    assert 0.0 <= float(unc.std.min()) and float(unc.std.max()) <= 0.5
    assert float(unc.std.max()) > 0.01
    assert 0.0 <= float(unc.heatmap.min()) and float(unc.heatmap.max()) <= 1.0


def test_bench_teach_reports_every_measurement(tiny_weights: Path, synthetic_root: Path, tmp_path: Path) -> None:
    import json

    from lggdemo.bench.cli import main

    out = tmp_path / "teach.json"
    assert main(["--teach", "--device", "cpu", "--repeats", "1", "--warmup", "0", "--weights", str(tiny_weights),
                 "--data", str(synthetic_root), "--json", str(out)]) == 0
    res = json.loads(out.read_text())["cpu"]
    assert res["models"] == f"weights {tiny_weights}"
    for name in ("threshold_only_ms", "lesson_redraw_ms", "lesson_first_draw_ms", "first_view_ms", "uncertainty_ms"):
        assert res[name] > 0, name
    assert res["lesson_redraw_ms_vs_target"].startswith(("meets 300 ms", "misses 300 ms"))
    assert res["uncertainty_ms_vs_target"].startswith(("meets 1000 ms", "misses 1000 ms"))
