"""From a slice to its mask in the steps a class can follow: input, normalised input, probability, threshold,
post-processing, final mask.

The network runs once per slice (:func:`model_view`); every later step is a cheap function of the
logits it returned (:func:`masks_at`), so a threshold slider can redraw the mask without another
forward pass. Nothing is re-implemented: the forward pass is :func:`lggdemo.models.forward.segment_logits`
(what ``Predictor.segment`` runs, on the same engine) and the threshold and small-component rule is
:func:`lggdemo.models.networks.masks_from_logits` called with the chosen threshold, so at the model's own
threshold the final mask here *is* the model's mask, pixel for pixel.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from lggdemo.data.imageio import SLICE_SIZE
from lggdemo.models.engine import Engine
from lggdemo.models.forward import segment_logits
from lggdemo.models.networks import SegConfig, masks_from_logits
from lggdemo.models.preprocess import prepare_images
from lggdemo.teach.errors import TeachInputError

#: Normalised (z-scored) values shown from black to white: ±3 standard deviations of the head's pixels.
DISPLAY_Z = 3.0


@dataclass(frozen=True)
class ModelView:
    """What one forward pass gives for one slice: everything the later steps are made from."""

    network_input: np.ndarray  # (3, s, s) float32: the z-scored channels at the U-Net's input side s
    logits: np.ndarray  # (256, 256) float32 tumour logits, resized to the slice as the mask rule does
    probability: np.ndarray  # (256, 256) float32 sigmoid of the logits: the probability map
    config: SegConfig  # the model's threshold and post-processing rule

    @property
    def input_size(self) -> int:
        return int(self.network_input.shape[-1])


@dataclass(frozen=True)
class MaskSteps:
    """The mask at one threshold, before and after post-processing."""

    threshold: float
    thresholded: np.ndarray  # (256, 256) uint8: probability > threshold
    final: np.ndarray  # (256, 256) uint8: after the model's post-processing
    removed: np.ndarray  # (256, 256) uint8: pixels post-processing dropped
    removed_components: int  # how many connected pieces were dropped
    min_component_px: int  # the rule: pieces smaller than this are dropped (0: nothing is)


def _check_image(image_256: np.ndarray) -> np.ndarray:
    image = np.asarray(image_256)
    if image.shape != (SLICE_SIZE, SLICE_SIZE, 3) or image.dtype != np.uint8:
        raise TeachInputError(f"expected a ({SLICE_SIZE}, {SLICE_SIZE}, 3) uint8 slice, got {image.dtype} {image.shape}")
    return image


def to_slice_size(logits: torch.Tensor) -> torch.Tensor:
    """(N, 1, s, s) logits -> (N, 1, 256, 256), resized exactly as ``masks_from_logits`` resizes them."""
    if logits.shape[-1] == SLICE_SIZE:
        return logits.float()
    return torch.nn.functional.interpolate(logits.float(), size=(SLICE_SIZE, SLICE_SIZE), mode="bilinear",
                                           align_corners=False)


def model_view(model: torch.nn.Module | Engine, config: SegConfig, image_256: np.ndarray,
               device: torch.device | None = None) -> ModelView:
    """Run the U-Net once on a (256, 256, 3) uint8 slice and keep its input and logits.

    ``model``: the Predictor's engine (``predictor.engine``, so the lesson shows the app's numbers) or a bare U-Net.
    """
    image = _check_image(image_256)
    logits = segment_logits(model, config, image[None], device)
    big = to_slice_size(logits.cpu())[0, 0]
    x = prepare_images(image[None], config.image_size)[0].numpy()  # the very tensor segment_logits fed the U-Net
    return ModelView(network_input=x, logits=big.numpy().astype(np.float32),
                     probability=torch.sigmoid(big).numpy().astype(np.float32), config=config)


def view_from_probability(config: SegConfig, image_256: np.ndarray, probability: np.ndarray) -> ModelView:
    """The lesson's view of a slice the app has already predicted, from the (256, 256) probability it kept.

    No forward pass: the network input is re-made by the same preprocessing (cheap), and the logits are the
    probability's inverse sigmoid, so every threshold in (0, 1) cuts the same pixels as the prediction's own
    logits (up to the stored precision: float32 in slice mode, float16 for a whole patient).
    """
    image = _check_image(image_256)
    prob = np.asarray(probability, dtype=np.float64)
    if prob.shape != (SLICE_SIZE, SLICE_SIZE):
        raise TeachInputError(f"expected a ({SLICE_SIZE}, {SLICE_SIZE}) probability map, got {prob.shape}")
    with np.errstate(divide="ignore"):
        logits = np.log(prob) - np.log1p(-prob)  # +-inf at exactly 1 or 0: still on the right side of any threshold
    x = prepare_images(image[None], config.image_size)[0].numpy()
    return ModelView(network_input=x, logits=logits.astype(np.float32), probability=prob.astype(np.float32),
                     config=config)


def masks_at(view: ModelView, threshold: float | None = None) -> MaskSteps:
    """The thresholded, post-processed and final masks at ``threshold`` (default: the model's own).

    Both masks come from ``masks_from_logits``: once with post-processing switched off, once with the
    model's rule; what differs is what the rule removed.
    """
    t = view.config.threshold if threshold is None else float(threshold)
    if not 0.0 < t < 1.0:
        raise TeachInputError(f"the threshold must lie strictly between 0 and 1, got {threshold}")
    config = dataclasses.replace(view.config, threshold=t)
    logits = torch.from_numpy(view.logits)[None, None]
    raw = masks_from_logits(logits, dataclasses.replace(config, min_component_px=0), SLICE_SIZE)[0]
    final = raw if config.min_component_px <= 0 else masks_from_logits(logits, config, SLICE_SIZE)[0]
    removed = (raw.astype(bool) & ~final.astype(bool)).astype(np.uint8)
    n_removed = int(ndimage.label(removed)[1]) if removed.any() else 0
    return MaskSteps(threshold=t, thresholded=raw, final=final, removed=removed, removed_components=n_removed,
                     min_component_px=int(config.min_component_px))


def input_channel_images(view: ModelView) -> list[np.ndarray]:
    """The three normalised channels the network receives, as gray uint8 pictures (±DISPLAY_Z -> black..white)."""
    scaled = np.clip((view.network_input + DISPLAY_Z) / (2 * DISPLAY_Z), 0.0, 1.0)
    return [(scaled[c] * 255).round().astype(np.uint8) for c in range(scaled.shape[0])]
