"""Augmentation on whole batches of tensors (on a 2-core CPU a per-sample pipeline costs as much as the model)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def augment(x: torch.Tensor, y: torch.Tensor | None, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Flip, rotate (±15°), scale (±10%), contrast and brightness -- image and mask moved together."""
    n = x.shape[0]
    dev = x.device
    flip = (torch.rand(n, generator=gen) < 0.5).to(dev)
    angle = (torch.rand(n, generator=gen) * 30 - 15) * math.pi / 180
    scale = 1 + (torch.rand(n, generator=gen) * 0.2 - 0.1)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    sign = torch.where(flip.cpu(), -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos * sign, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin * sign, cos
    grid = F.affine_grid(theta.to(dev, x.dtype), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if y is not None:
        y = (F.grid_sample(y, grid, mode="bilinear", padding_mode="zeros", align_corners=False) > 0.5).to(y.dtype)
    contrast = (1 + (torch.rand(n, x.shape[1], 1, 1, generator=gen) * 0.2 - 0.1)).to(dev, x.dtype)
    brightness = (torch.rand(n, x.shape[1], 1, 1, generator=gen) * 0.2 - 0.1).to(dev, x.dtype)
    return x * contrast + brightness, y
