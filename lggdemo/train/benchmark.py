"""Training throughput of each model on random data (``python -m lggdemo.bench --train`` prints it)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lggdemo.device import choose_device, describe
from lggdemo.models import GradeConfig, SegConfig, build_grade, build_segmentation
from lggdemo.train.augmentation import augment
from lggdemo.train.config import TrainConfig
from lggdemo.train.loop import autocast


def benchmark_training(device: str = "auto", image_size: int | None = None, steps: int = 5) -> dict[str, Any]:
    """Training throughput (images/s) of each model at the full preset's sizes on random data."""
    import segmentation_models_pytorch as smp

    dev = choose_device(device)
    cfg = TrainConfig.from_preset("full", image_size=image_size)
    results: dict[str, Any] = {"device": describe(dev), "batch_size": cfg.batch_size}
    gen = torch.Generator().manual_seed(0)
    seg = build_segmentation(SegConfig(encoder=cfg.encoder, image_size=cfg.image_size)).to(dev).train()
    grade = build_grade(GradeConfig(image_size=cfg.grade_image_size)).to(dev).train()
    dice_loss = smp.losses.DiceLoss(mode="binary", from_logits=True)
    for name, model, size in (("segmentation", seg, cfg.image_size), ("grade", grade, cfg.grade_image_size)):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x = torch.randn(cfg.batch_size, 3, size, size, generator=gen).to(dev)
        y = (torch.rand(cfg.batch_size, 1, size, size, generator=gen) > 0.8).float().to(dev)
        clin = torch.zeros(cfg.batch_size, 4, device=dev)
        label = torch.ones(cfg.batch_size, device=dev)
        times = []
        for i in range(steps + 1):
            t = time.perf_counter()
            xb, yb = augment(x, y if name == "segmentation" else None, gen)
            with autocast(dev):
                out = model(xb) if name == "segmentation" else model(xb, clin)
            out = out.float()
            loss = (dice_loss(out, yb) + F.binary_cross_entropy_with_logits(out, yb)) if name == "segmentation" \
                else F.binary_cross_entropy_with_logits(out[:, 0], label)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            if i:
                times.append(time.perf_counter() - t)
        ips = cfg.batch_size / float(np.median(times))
        results[name] = {"image_size": size, "images_per_second": ips}
    seg_epoch = cfg.seg_samples / results["segmentation"]["images_per_second"]
    grade_epoch = cfg.grade_samples / results["grade"]["images_per_second"]
    results["full_estimate_seconds"] = cfg.seg_epochs * seg_epoch + cfg.grade_epochs * grade_epoch * (1 + 3 * cfg.folds)
    q = TrainConfig.from_preset("quick")
    results["quick_estimate_seconds"] = q.seg_epochs * q.seg_samples / results["segmentation"]["images_per_second"] + \
        q.grade_epochs * q.grade_samples / results["grade"]["images_per_second"]
    return results
