"""Network builders, the logits-to-mask rule and the patient logit (``lggdemo.models.networks``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lggdemo.models.networks import (
    GradeConfig,
    SegConfig,
    build_grade,
    build_segmentation,
    grade_config_from_dict,
    masks_from_logits,
    patient_logit,
    seg_config_from_dict,
    seg_logits,
)


def test_unet_maps_slices_to_one_logit_per_pixel() -> None:
    torch.manual_seed(0)
    model = build_segmentation(SegConfig(encoder="resnet18", image_size=64)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert tuple(out.shape) == (2, 1, 64, 64)


def test_flip_tta_averages_the_mirror_image() -> None:
    torch.manual_seed(0)
    model = build_segmentation(SegConfig(encoder="resnet18", image_size=64)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        plain = seg_logits(model, SegConfig(encoder="resnet18", flip_tta=False), x)
        tta = seg_logits(model, SegConfig(encoder="resnet18", flip_tta=True), x)
        mirrored = torch.flip(model(torch.flip(x, dims=[3])), dims=[3])
    assert torch.allclose(tta, 0.5 * (plain + mirrored), atol=1e-5)
    assert not torch.allclose(tta, plain)


def test_flip_tta_is_one_pass_for_inference_and_two_with_gradients() -> None:
    """Inference sends slices and mirrors as one batch; Grad-CAM (gradients on) gets one output per input slice."""
    torch.manual_seed(0)
    model = build_segmentation(SegConfig(encoder="resnet18", image_size=64)).eval()
    batches: list[int] = []
    model.register_forward_pre_hook(lambda _m, args: batches.append(len(args[0])))
    x, cfg = torch.randn(3, 3, 64, 64), SegConfig(encoder="resnet18", flip_tta=True)
    with torch.no_grad():
        one_pass = seg_logits(model, cfg, x)
    assert batches == [6]
    batches.clear()
    two_passes = seg_logits(model, cfg, x)
    assert batches == [3, 3] and two_passes.requires_grad
    assert torch.allclose(one_pass, two_passes.detach(), atol=1e-5)


def test_grade_net_takes_crops_and_the_clinical_vector() -> None:
    cfg = GradeConfig(image_size=32)
    net = build_grade(cfg).eval()
    with torch.no_grad():
        out = net(torch.randn(3, 3, 32, 32), torch.zeros(3, len(cfg.clinical_features)))
    assert tuple(out.shape) == (3, 1)


def test_masks_threshold_at_the_configured_probability_and_drop_small_components() -> None:
    logits = torch.full((1, 1, 32, 32), -5.0)
    logits[0, 0, 4:14, 4:14] = 5.0  # 100 px at 32²: 6400 px at 256²
    logits[0, 0, 20, 20] = 5.0  # one pixel: 64 px at 256²
    kept = masks_from_logits(logits, SegConfig(min_component_px=100), 256)
    assert kept.shape == (1, 256, 256) and kept.dtype == np.uint8
    assert kept[0, 60:80, 60:80].all() and not kept[0, 160:168, 160:168].any()
    both = masks_from_logits(logits, SegConfig(min_component_px=0), 256)
    assert both[0, 160:168, 160:168].any()


def test_patient_logit_weights_slices_by_tumour_area() -> None:
    assert patient_logit(np.array([1.0, 3.0, 100.0]), np.array([1, 3, 0])) == pytest.approx(2.5)
    assert patient_logit(np.array([1.0, 3.0]), np.array([0, 0])) == pytest.approx(2.0)  # no tumour: plain mean
    with pytest.raises(ValueError):
        patient_logit(np.array([]), np.array([]))


def test_configs_round_trip_and_ignore_unknown_keys() -> None:
    assert seg_config_from_dict({"encoder": "resnet18", "image_size": 96, "future_key": 1}) == SegConfig("resnet18", 96)
    g = grade_config_from_dict({"image_size": 64, "age_scale": {"mean": 50.0, "std": 12.0},
                                "clinical_features": ["age_z", "age_missing", "sex_male", "sex_missing"]})
    assert g.age_scale.mean == 50.0 and isinstance(g.clinical_features, tuple)
