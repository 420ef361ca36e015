"""Where the U-Net is unsure: the spread of its predictions on mirrored copies of a slice.

A tumour has no preferred side, so a trustworthy prediction should not change when the slice is
mirrored. The network is run on four copies -- as is, mirrored left-right, mirrored top-bottom, and both
(a half turn) -- each output is mirrored back, and the per-pixel standard deviation of the four tumour
probabilities is the map: 0 where every copy agrees, up to 0.5 where half say tumour and half say not.

Why these four and not all eight symmetries of the square: the quarter turns double the cost (the map
must stay within a second on a 2-core CPU) and are the copies the model handles worst (the trainer
augments with mirrors and rotations of ±15° only, so a brain on its side is new to it); on the bundled
weights and real slices the four copies here score within a few Dice points of each other.

Why test-time augmentation and not MC dropout: the U-Net (``smp.Unet`` with no auxiliary head) has no
dropout layer, so dropout at test time would change nothing. The raw network is used for each copy
(not ``seg_logits``'s own mirror averaging, which would fold pairs of copies into one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lggdemo.models.engine import Engine, as_engine
from lggdemo.models.networks import SegConfig
from lggdemo.models.preprocess import prepare_images
from lggdemo.teach.steps import _check_image, to_slice_size

#: The copies, as (quarter turns, mirrored left-right first): as is, left-right, top-bottom (a half turn of the
#: left-right mirror) and a half turn.
VIEWS: tuple[tuple[int, bool], ...] = ((0, False), (0, True), (2, True), (2, False))
#: The largest standard deviation values in [0, 1] can have: the map's scale.
MAX_STD = 0.5


@dataclass(frozen=True)
class Uncertainty:
    std: np.ndarray  # (256, 256) float32 in [0, 0.5]: spread of the views' tumour probabilities
    mean_probability: np.ndarray  # (256, 256) float32: their average
    n_views: int

    @property
    def heatmap(self) -> np.ndarray:
        """The spread on a [0, 1] scale (1 = the largest spread possible), for ``overlay_heatmap``."""
        return np.clip(self.std / MAX_STD, 0.0, 1.0).astype(np.float32)


def _forward(x: torch.Tensor, k: int, mirror: bool) -> torch.Tensor:
    if mirror:
        x = torch.flip(x, dims=[3])
    return torch.rot90(x, k, dims=(2, 3))


def _backward(y: torch.Tensor, k: int, mirror: bool) -> torch.Tensor:
    y = torch.rot90(y, -k, dims=(2, 3))
    return torch.flip(y, dims=[3]) if mirror else y


@torch.no_grad()
def tta_uncertainty(model: torch.nn.Module | Engine, config: SegConfig, image_256: np.ndarray,
                    device: torch.device | None = None) -> Uncertainty:
    """Per-pixel spread of the U-Net's probabilities over the four mirrored copies of a slice (:data:`VIEWS`).

    ``model``: the Predictor's engine (one pass of the four copies as a batch) or a bare U-Net.
    """
    image = _check_image(image_256)
    x = prepare_images(image[None], config.image_size)
    batch = torch.cat([_forward(x, k, m) for k, m in VIEWS])
    out = torch.from_numpy(as_engine(model, device).segment(batch.numpy())).float()
    logits = torch.cat([_backward(out[i : i + 1], k, m) for i, (k, m) in enumerate(VIEWS)])
    probs = torch.sigmoid(to_slice_size(logits.cpu()))[:, 0].numpy()
    return Uncertainty(std=probs.std(axis=0).astype(np.float32), mean_probability=probs.mean(axis=0).astype(np.float32),
                       n_views=len(VIEWS))
