"""The U-Net: its training (optionally continuing a trained one) and its loss."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lggdemo.data.arrays import slice_arrays
from lggdemo.evaluation.crossval import precision_used, run_precision
from lggdemo.evaluation.scoring import score_segmentation
from lggdemo.models.networks import SegConfig, build_segmentation
from lggdemo.models.preprocess import normalize_images
from lggdemo.models.weights import SEG_FILE, WeightsError, load_card, load_segmentation
from lggdemo.train.augmentation import augment
from lggdemo.train.config import TrainConfig, TrainError
from lggdemo.train.distributed import distribute, is_main, rank_seed
from lggdemo.train.events import Fit
from lggdemo.train.loop import autocast, channels_last, gather_batch, resolve_precision, train_loop
from lggdemo.train.prepare import Prepared
from lggdemo.train.progress import Progress
from lggdemo.train.scoring import scoring_engine
from lggdemo.train.split import Split, same_split


@dataclass(frozen=True)
class Parent:
    """A U-Net trained earlier in this same run, to be continued (the first of two stages), and its lineage."""

    state: dict[str, torch.Tensor]
    lineage: dict[str, Any]


def train_unet(cfg: TrainConfig, prep: Prepared, progress: Progress) -> tuple[torch.nn.Module, SegConfig, dict[str, Any]]:
    """The run's U-Net: one stage, or with ``cfg.refine_epochs`` two, the second continuing the first in-process.

    The two stages are the chain ``--preset full`` then ``--preset refine --init-from`` in one command: the second
    stage is :meth:`TrainConfig.refine_stage`, a fresh optimiser and schedule (a warm restart) from the first
    stage's weights, rounded to float16 as the two-command chain stores them between its runs. The card records
    the first stage as the second's ``initialised_from`` and the second's settings as ``segmentation.train_config``,
    so cross-validation sees the same recipe either way.
    """
    if not cfg.refine_epochs:
        return train_segmentation(cfg, prep, progress)
    model, seg_cfg, info = train_segmentation(cfg, prep, progress, Fit("stage 1", 0, 2))
    first = dataclasses.replace(cfg, refine_epochs=0)
    lineage = {"folder": None, "in_process": True, "train_config": dataclasses.asdict(first),
               "config": dataclasses.asdict(seg_cfg), "training_seconds": info["training_seconds"],
               "images_per_second": info["images_per_second"], "initialised_from": info.get("initialised_from"),
               "precision_used": resolve_precision(prep.device, first.precision)}
    state = {k: v.detach().half().float() if v.is_floating_point() else v.detach().clone()
             for k, v in model.state_dict().items()}
    stage2 = cfg.refine_stage()
    model, seg_cfg, info = train_segmentation(stage2, prep, progress, Fit("refine", 1, 2), Parent(state, lineage))
    return model, seg_cfg, {**info, "train_config": dataclasses.asdict(stage2)}


def train_segmentation(cfg: TrainConfig, prep: Prepared, progress: Progress, fit: Fit = Fit(),
                       parent: Parent | None = None) -> tuple[torch.nn.Module, SegConfig, dict[str, Any]]:
    """Train one U-Net stage: from scratch, from ``cfg.init_from`` (another run's folder) or from ``parent``."""
    import segmentation_models_pytorch as smp

    dev = prep.device
    seg_cfg = SegConfig(encoder=cfg.encoder, image_size=cfg.image_size, min_component_px=cfg.min_component_px,
                        flip_tta=cfg.flip_tta)
    torch.manual_seed(cfg.seed)
    model = build_segmentation(seg_cfg)
    if parent is not None:
        model.load_state_dict(parent.state)
        lineage: dict[str, Any] | None = parent.lineage
    else:
        lineage = continue_from(cfg, prep.split, model) if cfg.init_from else None
    model = model.to(dev)
    # DDP on several ranks; `model` is what is validated and saved
    net = distribute(model, dev, channels_last=channels_last(dev, cfg.precision))
    arrays = slice_arrays(prep.index, cfg.image_size)
    train_sel = np.isin(arrays.patient_ids, prep.split.train)
    extra = prep.corrections
    if extra is not None:  # a corrected slice stands in for the original one
        train_sel &= ~extra.replaced(arrays.patient_ids, arrays.numbers)
    x_all = torch.from_numpy(normalize_images(arrays.images[train_sel]))
    y_all = torch.from_numpy(arrays.masks[train_sel]).float()[:, None]
    draw_weights = sampling_weights(y_all, cfg.small_tumour_boost)
    if extra is not None:
        fixed = extra.arrays(cfg.image_size)
        x_all = torch.cat([x_all, torch.from_numpy(normalize_images(fixed.images))])
        y_all = torch.cat([y_all, torch.from_numpy(fixed.masks).float()[:, None]])
        draw_weights = torch.cat([draw_weights, torch.full((len(fixed.masks),), 3.0 * extra.weight)])
    dice_loss = smp.losses.DiceLoss(mode="binary", from_logits=True)
    gen = torch.Generator().manual_seed(rank_seed(cfg.seed))

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        xb, yb = augment(gather_batch(x_all, idx, dev), gather_batch(y_all, idx, dev), gen)
        with autocast(dev, cfg.precision):
            logits = net(xb)
        logits = logits.float()
        loss = dice_loss(logits, yb) + F.binary_cross_entropy_with_logits(logits, yb)
        return loss + slice_dice_loss(logits, yb) if cfg.slice_dice else loss

    val_sel = prep.validation_selection()

    def validate() -> dict[str, float]:
        if not val_sel.any():
            return {}
        engine = scoring_engine(dev, progress, seg=model, seg_size=seg_cfg.image_size)
        return score_segmentation(engine, seg_cfg, prep.arrays_256.images[val_sel], prep.arrays_256.masks[val_sel],
                                  prep.arrays_256.patient_ids[val_sel]).curve()

    info = train_loop(model, torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4),
                      draw_weights,
                      batch_loss, name="segmentation", epochs=cfg.seg_epochs, samples=cfg.seg_samples, cfg=cfg,
                      gen=gen, progress=progress, fit=fit, validate=validate if cfg.epoch_validation and is_main() else None,
                      history=prep.history["segmentation"])
    if lineage:
        info["initialised_from"] = lineage
    if extra is not None:
        info["corrections"] = extra.card_entry()
    return model.eval(), seg_cfg, info


SMALL_TUMOUR_PX = 256  # true tumour pixels per 256x256 slice below which a tumour counts as small (evaluate.AREA_BINS)


def sampling_weights(masks: torch.Tensor, small_tumour_boost: int = 1) -> torch.Tensor:
    """Each slice's chance of being drawn: 1 without tumour, 3 with, ``3 * boost`` with a small one.

    Tumour slices are a third of the data and what the metrics score; small tumours are where the
    U-Net is weakest, and the boost is a lever cross-validation decides on (docs/experiments).
    ``masks``: (N, 1, s, s) at the U-Net's input side ``s``; areas are scaled back to 256x256.
    """
    area = masks.flatten(1).sum(1) * (256 / masks.shape[-1]) ** 2
    weights = torch.where(area > 0, 3.0, 1.0)
    return torch.where((area > 0) & (area < SMALL_TUMOUR_PX), 3.0 * small_tumour_boost, weights)


def slice_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft Dice of each slice that shows tumour, averaged over those slices.

    The batch Dice pools pixels, so a large tumour outweighs a small one; the tumour-slice metric
    counts every tumour slice once, and small tumours at a lesion's edge are where the U-Net is weakest.
    """
    p, t = torch.sigmoid(logits).flatten(1), target.flatten(1)
    has = t.sum(1) > 0
    if not has.any():
        return logits.sum() * 0.0
    dice = (2 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)
    return 1 - dice[has].mean()


def continue_from(cfg: TrainConfig, split: Split, model: torch.nn.Module) -> dict[str, Any]:
    """Load the U-Net of ``cfg.init_from`` into ``model``; returns its lineage for the card.

    Refused unless that model was trained on exactly this run's training patients: starting from a
    model that saw this run's validation patients would leak them into every number in the card.
    """
    src = Path(str(cfg.init_from))
    try:
        card = load_card(src)
        parent, parent_cfg = load_segmentation(src, "cpu")
    except WeightsError as exc:
        raise TrainError(f"--init-from {src}: {exc}") from exc
    if not same_split(card, split):
        raise TrainError(f"--init-from {src} was trained on a different patient split (seed "
                         f"{card.split.seed}); continuing from it would leak validation patients "
                         "into training.")
    if parent_cfg.encoder != cfg.encoder:
        raise TrainError(f"--init-from {src} has a {parent_cfg.encoder} encoder, this run a {cfg.encoder} one.")
    model.load_state_dict(parent.state_dict())
    seg = card.segmentation
    last = seg.data.get("train_config")  # a two-stage parent records its last stage's settings here
    return {"folder": str(src), "version": card.version, "sha256": card.file_sha256(SEG_FILE),
            "train_config": (last if isinstance(last, dict) else card.train_config) or None, "config": seg.config or None,
            "training_seconds": seg.training_seconds, "images_per_second": seg.data.get("images_per_second"),
            "initialised_from": seg.initialised_from,
            "precision_used": precision_used(last if isinstance(last, dict) else card.train_config,
                                             run_precision(card), card.device)}
