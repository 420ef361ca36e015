"""Grad-CAM for both models: shapes, ranges, where the map may be non-zero, hooks released, bad input."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from lggdemo.data.kaggle import Clinical, load_image, load_mask, scan_dataset
from lggdemo.inference.gradcam import grade_cam, seg_target_layer, segmentation_cam
from lggdemo.inference.predictor import Predictor
from lggdemo.models.preprocess import ClinicalInputError, tumour_box


@pytest.fixture(scope="module")
def predictor(tiny_weights: Path) -> Predictor:
    return Predictor.from_directory(tiny_weights, "cpu")


@pytest.fixture(scope="module")
def tumour_slice(synthetic_root: Path) -> tuple[np.ndarray, np.ndarray]:
    index = scan_dataset(synthetic_root)
    for rec in index.patients[index.patient_ids[0]]:
        mask = load_mask(rec)
        if mask.sum() > 300:
            return load_image(rec), mask
    raise AssertionError("phantom patient without a sizeable tumour slice")


def _hook_count(module: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) for m in module.modules())


def test_grade_cam_lives_in_the_crop_box(predictor: Predictor, tumour_slice: tuple[np.ndarray, np.ndarray]) -> None:
    image, mask = tumour_slice
    before = _hook_count(predictor.grade_model)
    cam = grade_cam(predictor.grade_model, predictor.grade_config, image, mask, Clinical(50.0, "male"))
    assert _hook_count(predictor.grade_model) == before  # hooks released
    assert all(p.grad is None for p in predictor.grade_model.parameters())  # no gradients kept on a cached model
    assert all(p.requires_grad for p in predictor.grade_model.parameters())  # flags restored after the CAM
    assert cam.heatmap.shape == (256, 256) and cam.heatmap.dtype == np.float32
    assert 0.0 <= cam.heatmap.min() and cam.heatmap.max() <= 1.0
    assert cam.box == tumour_box(mask)
    y0, x0, y1, x1 = cam.box
    outside = cam.heatmap.copy()
    outside[y0:y1, x0:x1] = 0
    assert outside.max() == 0.0
    assert cam.heatmap[y0:y1, x0:x1].max() > 0 or cam.note  # a flat map must say so
    again = grade_cam(predictor.grade_model, predictor.grade_config, image, mask, Clinical(50.0, "male"))
    np.testing.assert_allclose(again.heatmap, cam.heatmap, atol=1e-5)


def test_grade_cam_clinical_only_model_and_bad_clinical(predictor: Predictor,
                                                        tumour_slice: tuple[np.ndarray, np.ndarray]) -> None:
    image, mask = tumour_slice
    clinical_only = dataclasses.replace(predictor.grade_config, use_image=False)
    cam = grade_cam(predictor.grade_model, clinical_only, image, mask, Clinical())
    assert cam.heatmap.max() == 0 and "clinical fields only" in cam.note
    with pytest.raises(ClinicalInputError):
        grade_cam(predictor.grade_model, predictor.grade_config, image, mask, Clinical(age=200.0))
    assert _hook_count(predictor.grade_model) == 0


def test_segmentation_cam(predictor: Predictor, tumour_slice: tuple[np.ndarray, np.ndarray]) -> None:
    image, mask = tumour_slice
    before = _hook_count(predictor.seg_model)
    cam = segmentation_cam(predictor.seg_model, predictor.seg_config, image, mask)
    assert _hook_count(predictor.seg_model) == before
    assert all(p.requires_grad and p.grad is None for p in predictor.seg_model.parameters())
    assert cam.heatmap.shape == (256, 256) and 0.0 <= cam.heatmap.min() and cam.heatmap.max() <= 1.0
    assert cam.heatmap.max() > 0 or cam.note
    assert "decoder" in cam.layer
    layer, _ = seg_target_layer(predictor.seg_model)
    assert layer is predictor.seg_model.decoder.blocks[-1]
    again = segmentation_cam(predictor.seg_model, predictor.seg_config, image, mask)
    np.testing.assert_allclose(again.heatmap, cam.heatmap, atol=1e-5)


def test_segmentation_cam_without_tumour_says_so(predictor: Predictor,
                                                tumour_slice: tuple[np.ndarray, np.ndarray]) -> None:
    image, _ = tumour_slice
    cam = segmentation_cam(predictor.seg_model, predictor.seg_config, image, np.zeros((256, 256), np.uint8))
    assert cam.heatmap.max() == 0 and "No tumour predicted" in cam.note


@pytest.mark.parametrize("shape", [(128, 128, 3), (256, 256)])
def test_bad_shapes_raise(predictor: Predictor, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="expected"):
        segmentation_cam(predictor.seg_model, predictor.seg_config, np.zeros(shape, np.uint8), np.zeros((256, 256)))
    with pytest.raises(ValueError, match="expected"):
        grade_cam(predictor.grade_model, predictor.grade_config, np.zeros(shape, np.uint8), np.zeros((256, 256)),
                  Clinical())


def test_frozen_layers_give_the_same_map_as_plain_gradcam(predictor: Predictor,
                                                         tumour_slice: tuple[np.ndarray, np.ndarray]) -> None:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    from lggdemo.data.imageio import resize_mask
    from lggdemo.models.preprocess import prepare_images

    image, mask = tumour_slice
    size = predictor.seg_config.image_size
    layer, _ = seg_target_layer(predictor.seg_model)
    with GradCAM(model=predictor.seg_model, target_layers=[layer]) as cam:
        ref = cam(input_tensor=prepare_images([image], size),
                  targets=[SemanticSegmentationTarget(0, resize_mask(mask, size).astype(np.float32))])[0]
    predictor.seg_model.zero_grad(set_to_none=True)
    ref256 = torch.nn.functional.interpolate(torch.from_numpy(ref)[None, None], size=(256, 256), mode="bilinear",
                                             align_corners=False)[0, 0].numpy()
    ours = segmentation_cam(predictor.seg_model, predictor.seg_config, image, mask).heatmap
    np.testing.assert_allclose(ours, np.clip(ref256, 0, 1), atol=1e-5)
