"""Where the U-Net is unsure: the spread of its predictions on rotated and mirrored copies of a slice.

A tumour has no preferred orientation, so a trustworthy prediction should not change when the slice
is turned or mirrored. The network is run on the eight copies (the four quarter turns, with and without
a mirror), each output is turned back, and the per-pixel standard deviation of the eight probabilities
is the map: 0 where every copy agrees, up to 0.5 where half say tumour and half say not.

The trainer augments with mirrors and rotations of ±15°, not quarter turns: where only the turned copies
disagree, part of the spread is the model's sensitivity to an orientation it never saw. On the bundled
weights and real slices the eight copies mostly score within a few Dice points of each other.

Why test-time augmentation and not MC dropout: the U-Net (``smp.Unet`` with no auxiliary head) has no
dropout layer, so dropout at test time would change nothing. The raw network is used for each copy
(not ``seg_logits``'s own mirror averaging, which would fold pairs of copies into one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lggdemo.infer import MODEL_LOCK
from lggdemo.models import SegConfig
from lggdemo.preprocess import prepare_images
from lggdemo.teach.steps import _check_image, to_slice_size

#: The eight symmetries of a square: (quarter turns, mirrored first).
VIEWS: tuple[tuple[int, bool], ...] = tuple((k, m) for m in (False, True) for k in range(4))
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
def tta_uncertainty(model: torch.nn.Module, config: SegConfig, image_256: np.ndarray,
                    device: torch.device) -> Uncertainty:
    """Per-pixel spread of the U-Net's probabilities over the eight rotated/mirrored copies of a slice."""
    image = _check_image(image_256)
    x = prepare_images(image[None], config.image_size).to(device)
    batch = torch.cat([_forward(x, k, m) for k, m in VIEWS])
    with MODEL_LOCK:
        model.eval()
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            out = model(batch)
    out = out.float()
    logits = torch.cat([_backward(out[i : i + 1], k, m) for i, (k, m) in enumerate(VIEWS)])
    probs = torch.sigmoid(to_slice_size(logits.cpu()))[:, 0].numpy()
    return Uncertainty(std=probs.std(axis=0).astype(np.float32), mean_probability=probs.mean(axis=0).astype(np.float32),
                       n_views=len(VIEWS))
