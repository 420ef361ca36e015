"""Grad-CAM for both models (package ``grad-cam``): which pixels pushed the grade up, and the mask out.

Both maps are computed on exactly the tensors the prediction used (``preprocess`` again), then drawn
back onto the 256×256 slice: the grade model only ever saw a crop around the tumour, so its map lives
in that box and is zero elsewhere. Every CAM object is used as a context manager so its hooks are
removed even when a call fails -- otherwise each page rerun would stack another pair of hooks -- and
holds ``models.engine.MODEL_LOCK``: hooks live on the shared, cached model, so another session's forward pass
must not run while they are attached. :func:`slice_cams` computes both maps of a slice in one turn of that
(fair) lock, so a click queues once behind other sessions, not twice. The predictions themselves run on the
Predictor's engine; Grad-CAM alone needs PyTorch's gradients.

Grad-CAM shows where the gradient of one output is large at one layer. It is a rough picture of what
the network responds to, not a proof of what it "looked at", and says nothing about correctness.

Example::

    cam = grade_cam(predictor.grade_model, predictor.grade_config, image_256, mask_256, Clinical(50, "male"))
    overlay_heatmap(channel_rgb(image_256), cam.heatmap)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget, SemanticSegmentationTarget
from torch import nn

from lggdemo.data.imageio import SLICE_SIZE, resize_mask
from lggdemo.data.kaggle import Clinical
from lggdemo.models.engine import MODEL_LOCK
from lggdemo.models.networks import GradeConfig, GradeNet, SegConfig
from lggdemo.models.preprocess import crop_tumour, encode_clinical, prepare_images, tumour_box


@dataclass(frozen=True)
class CamResult:
    heatmap: np.ndarray  # (256, 256) float32 in [0, 1]
    target: str  # what was explained, in words
    layer: str  # which layer's activations
    box: tuple[int, int, int, int] | None = None  # (y0, x0, y1, x1): where the grade model's crop came from
    note: str | None = None  # why the map is empty or what to keep in mind


class _ImageOnly(nn.Module):
    """The grade model with its clinical input fixed, so Grad-CAM can call it with the image alone."""

    def __init__(self, model: GradeNet, clinical: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("clinical", clinical)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image, self.clinical.expand(image.shape[0], -1))


@contextmanager
def _gradients_from(model: nn.Module, layer: nn.Module) -> Iterator[None]:
    """Let only ``layer``'s parameters require gradients while a CAM runs.

    Grad-CAM needs the gradient at the target layer's output, nothing below it; with the layers
    underneath frozen, the backward pass stops at that layer instead of running through the whole
    encoder. The map is identical and the call is several times cheaper on a CPU. Flags are restored
    afterwards, so a model shared with the trainer keeps its settings.
    """
    params = list(model.parameters())
    saved = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        for p in layer.parameters():
            p.requires_grad_(True)
        yield
    finally:
        for p, flag in zip(params, saved, strict=True):
            p.requires_grad_(flag)
        model.zero_grad(set_to_none=True)  # a cached model must not keep gradients between calls


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _check(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image, mask = np.asarray(image), np.asarray(mask)
    if image.shape != (SLICE_SIZE, SLICE_SIZE, 3) or image.dtype != np.uint8:
        raise ValueError(f"expected a ({SLICE_SIZE}, {SLICE_SIZE}, 3) uint8 slice, got {image.dtype} {image.shape}")
    if mask.shape != (SLICE_SIZE, SLICE_SIZE):
        raise ValueError(f"expected a ({SLICE_SIZE}, {SLICE_SIZE}) mask, got {mask.shape}")
    return image, (mask > 0).astype(np.uint8)


def _paste(cam: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """A crop-sized map resized into its box of an otherwise empty 256×256 map."""
    y0, x0, y1, x1 = box
    inner = torch.from_numpy(np.ascontiguousarray(cam, np.float32))[None, None]
    inner = torch.nn.functional.interpolate(inner, size=(y1 - y0, x1 - x0), mode="bilinear", align_corners=False)
    out = np.zeros((SLICE_SIZE, SLICE_SIZE), np.float32)
    out[y0:y1, x0:x1] = inner[0, 0].numpy()
    return np.clip(out, 0.0, 1.0)


def grade_cam(model: GradeNet, config: GradeConfig, image: np.ndarray, mask: np.ndarray,
              clinical: Clinical) -> CamResult:
    """Grad-CAM of the G3 logit at the ResNet50's last block, mapped from the tumour crop onto the slice.

    ``image`` is the (256, 256, 3) uint8 slice and ``mask`` the predicted 0/1 mask that chose the crop.
    Raises ClinicalInputError for clinical values the model cannot take.
    """
    image, mask = _check(image, mask)
    layer = "backbone.layer4[-1] (ResNet50 last bottleneck)"
    target = "P(G3) logit (grade III vs II)"
    box = tumour_box(mask)
    clin = torch.from_numpy(encode_clinical(clinical, config.age_scale))[None]
    if not config.use_image:
        return CamResult(np.zeros((SLICE_SIZE, SLICE_SIZE), np.float32), target, layer, box,
                         "This grade model uses the clinical fields only: no image region influences it.")
    device = _device_of(model)
    crop = crop_tumour(prepare_images([image], SLICE_SIZE), mask[None], config.image_size).to(device)
    wrapped = _ImageOnly(model, clin.to(device)).eval()
    with MODEL_LOCK, _gradients_from(model, model.cam_layer), \
            GradCAM(model=wrapped, target_layers=[model.cam_layer]) as cam:
        maps = cam(input_tensor=crop, targets=[BinaryClassifierOutputTarget(1)])
    heat = _paste(maps[0], box)
    if not mask.any():
        note: str | None = "No tumour predicted: the grade model saw the whole slice."
    elif heat.max() <= 0:
        note = ("Flat map: no part of the crop stands out for P(G3) at this layer (its weighted activations are "
                "uniform or negative; tiny crops leave the last block a single cell).")
    else:
        note = None
    return CamResult(heat, target, layer, box, note)


def seg_target_layer(model: nn.Module) -> tuple[nn.Module, str]:
    """The U-Net's last decoder block: full resolution, and the only input of the segmentation head.

    Deeper layers (the encoder's last stage, 8×8 at 256²) give blurrier maps that mostly light up the
    whole head; the last block keeps the map sharp enough to follow the predicted outline.
    """
    blocks = getattr(getattr(model, "decoder", None), "blocks", None)
    if blocks is None or len(blocks) == 0:
        raise ValueError("segmentation_cam expects an smp Unet (model.decoder.blocks)")
    return blocks[-1], f"decoder.blocks[{len(blocks) - 1}] (last U-Net decoder block)"


def segmentation_cam(model: nn.Module, config: SegConfig, image: np.ndarray, mask: np.ndarray) -> CamResult:
    """Grad-CAM of the summed tumour logits inside the predicted mask (``SemanticSegmentationTarget``).

    The U-Net has one output channel, so category 0 of its (1, H, W) per-slice output is the tumour
    logit; logits rather than probabilities, because the sigmoid is flat (zero gradient) exactly
    where the model is most sure. With ``flip_tta`` the mask averages the slice and its mirror image;
    the map explains the unflipped pass only (hooks see one forward pass at a time).
    """
    image, mask = _check(image, mask)
    layer_module, layer = seg_target_layer(model)
    target = "tumour logits summed over the predicted mask"
    if not mask.any():
        return CamResult(np.zeros((SLICE_SIZE, SLICE_SIZE), np.float32), target, layer, None,
                         "No tumour predicted on this slice: the segmentation Grad-CAM has no mask to explain.")
    device = _device_of(model)
    x = prepare_images([image], config.image_size).to(device)
    small = resize_mask(mask, config.image_size).astype(np.float32)
    with MODEL_LOCK, _gradients_from(model, layer_module), GradCAM(model=model, target_layers=[layer_module]) as cam:
        maps = cam(input_tensor=x, targets=[SemanticSegmentationTarget(0, small)])
    heat = maps[0]
    if heat.shape != (SLICE_SIZE, SLICE_SIZE):
        heat = _paste(heat, (0, 0, SLICE_SIZE, SLICE_SIZE))
    note = "Flat map: no region raises the tumour logits at this layer." if heat.max() <= 0 else None
    return CamResult(np.clip(heat, 0.0, 1.0).astype(np.float32), target, layer, None, note)


def slice_cams(grade_model: GradeNet | None, grade_config: GradeConfig, seg_model: nn.Module, seg_config: SegConfig,
               image: np.ndarray, mask: np.ndarray,
               clinical: Clinical | None) -> tuple[CamResult | Exception | None, CamResult | Exception]:
    """Both heatmaps of one slice in one acquisition of ``MODEL_LOCK``: (grade map, segmentation map), each a
    :class:`CamResult` whose heat is (256, 256) float32 in [0, 1] over the (256, 256, 3) uint8 ``image``; ``mask``
    is its (256, 256) 0/1 predicted tumour.

    The grade map is None without accepted clinical fields (or without a grade model); a map that cannot be
    computed comes back as its exception (ValueError, RuntimeError) so the other one is still shown.
    """
    def attempt(fn: Callable[[], CamResult]) -> CamResult | Exception:
        try:
            return fn()
        except (ValueError, RuntimeError) as exc:
            return exc

    with MODEL_LOCK:  # reentrant: the two calls inside take it again for free
        grade = None if clinical is None or grade_model is None else \
            attempt(lambda: grade_cam(grade_model, grade_config, image, mask, clinical))
        seg = attempt(lambda: segmentation_cam(seg_model, seg_config, image, mask))
    return grade, seg
