"""Train both models and write a weights folder with its model card: ``python -m lggdemo.train``.

Why it is shaped this way:
- The split is by patient and stratified by grade, fixed by a seed and written into the card: the
  slices of one patient are strongly correlated, so a slice-level split would report inflated
  numbers.
- Every slice is decoded and normalised once per run (uint8 arrays cached on disk by dataset
  version) and augmentation runs on whole batches of tensors, because on a 2-core CPU the data
  pipeline would otherwise cost as much as the model.
- Nothing is written to ``--out`` until training has finished; then each file is written to a
  temporary name and renamed, the card last. A run stopped by SIGTERM / Ctrl-C (checked between
  steps) or killed outright leaves the previous weights byte-identical.
- Grade metrics come from patients the models never saw (the held-out split, with the masks the
  segmentation model predicts, as in the app) and, because those are few, also from k-fold
  cross-validation over the training patients. The shipped grade model is trained on all training
  patients.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import math
import os
import platform
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import lggdemo
from lggdemo.data import (
    Clinical,
    DatasetError,
    DatasetIndex,
    SliceArrays,
    scan_dataset,
    slice_arrays,
)
from lggdemo.device import DeviceError, choose_device, describe
from lggdemo.evaluate import (
    DEFINITIONS,
    Metric,
    age_baseline_probs,
    bootstrap_ci,
    evaluate_grade,
    evaluate_segmentation,
    grade_metrics,
    predict_masks,
    roc_auc,
)
from lggdemo.models import (
    GradeConfig,
    GradeNet,
    SegConfig,
    build_grade,
    build_segmentation,
    init_grade_from_segmentation,
    patient_logit,
)
from lggdemo.preprocess import AgeScale, crop_tumour, encode_clinical, normalize_images
from lggdemo.weights import (
    CARD_FILE,
    GRADE_FILE,
    SEG_FILE,
    WeightsError,
    active_dir,
    load_grade,
    load_segmentation,
    read_card,
    save_model,
    write_card,
)

Event = dict[str, Any]
ProgressCallback = Callable[[Event], None]

PRESETS: dict[str, dict[str, Any]] = {
    # A few minutes on a 2-core CPU: enough for a class to watch the loss fall.
    "quick": dict(encoder="resnet18", image_size=128, seg_epochs=2, seg_samples=384, grade_image_size=64,
                  grade_epochs=2, grade_samples=256, folds=0, batch_size=16),
    # Stage 1 of the bundled weights: sizes that fit one session on a 2-core CPU (see weights/README.md).
    "full": dict(encoder="resnet18", image_size=128, seg_epochs=24, seg_samples=1200, grade_image_size=64,
                 grade_epochs=8, grade_samples=768, folds=4, batch_size=16),
    # A second stage for a `full` run's U-Net (`--init-from`): a warm restart at a lower rate with
    # the per-slice Dice term, because that U-Net underfits its own training patients, worst on small
    # tumours. Stage 2 of the bundled weights, adopted by cross-validation (see weights/README.md).
    "refine": dict(encoder="resnet18", image_size=128, seg_epochs=10, seg_samples=1200, lr=3e-4, slice_dice=True,
                   grade_image_size=64, grade_epochs=8, grade_samples=768, folds=4, batch_size=16),
}
TASKS = ("seg", "grade", "all")


class TrainError(ValueError):
    """Settings or data that make training impossible; the message is for the person who asked."""


class Cancelled(Exception):
    """Raised between steps once a stop was requested."""


@dataclass
class TrainConfig:
    task: str = "all"
    data: str | None = None
    out: str = str(Path(__file__).resolve().parents[1] / "weights")
    preset: str = "quick"
    encoder: str = "resnet18"
    image_size: int = 128
    seg_epochs: int = 2
    seg_samples: int = 384  # slices drawn per epoch (tumour slices 3x as likely)
    grade_image_size: int = 64
    grade_epochs: int = 2
    grade_samples: int = 256
    folds: int = 0  # k-fold CV of the grade model over training patients (0 = none)
    batch_size: int = 16
    lr: float = 1e-3
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"
    min_component_px: int = 64
    flip_tta: bool = True
    grade_init: str = "segmentation"  # "segmentation" (when the U-Net encoder is a resnet50) | "scratch"
    progress_file: str | None = None
    complete_from: str | None = None  # where the model not trained in this run is copied from
    init_from: str | None = None  # weights folder whose U-Net this run continues (same split required)
    slice_dice: bool = False  # add a Dice term per tumour slice to the batch Dice (see slice_dice_loss)
    epoch_validation: bool = True  # score the U-Net on the validation patients after every epoch (a curve only)
    fold: tuple[int, int] | None = None  # (i, k): hold out fold i of a k-fold partition instead of val_fraction
    threads: int | None = None

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> TrainConfig:
        if preset not in PRESETS:
            raise TrainError(f"Unknown preset {preset!r}: choose {', '.join(PRESETS)}.")
        values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
        return cls(preset=preset, **values)

    def validate(self) -> None:
        if self.task not in TASKS:
            raise TrainError(f"Unknown task {self.task!r}: choose seg, grade or all.")
        for name in ("seg_epochs", "grade_epochs"):
            if getattr(self, name) < 1:
                raise TrainError(f"{name.replace('_', ' ')} must be at least 1 (got {getattr(self, name)}).")
        for name in ("image_size", "grade_image_size"):
            v = getattr(self, name)
            if v < 32 or v % 32:
                raise TrainError(f"{name.replace('_', ' ')} must be a multiple of 32, at least 32 (got {v}).")
        if self.image_size > 256:
            raise TrainError("image size above 256 only upsamples the 256×256 slices; use at most 256.")
        if self.batch_size < 2:
            raise TrainError("batch size must be at least 2 (batch normalisation needs two samples).")
        if self.seg_samples < self.batch_size or self.grade_samples < self.batch_size:
            raise TrainError("samples per epoch must be at least one batch.")
        if not 0 < self.val_fraction < 0.9:
            raise TrainError("validation fraction must be between 0 and 0.9.")
        if self.folds == 1 or self.folds < 0:
            raise TrainError("folds must be 0 (no cross-validation) or at least 2.")
        if self.fold is not None and not (self.fold[1] >= 2 and 0 <= self.fold[0] < self.fold[1]):
            raise TrainError(f"fold must be I/K with K at least 2 and 0 <= I < K (got {self.fold[0]}/{self.fold[1]}).")
        if self.preset == "refine" and not self.init_from:
            raise TrainError("the refine preset continues a trained U-Net: give the weights folder with --init-from.")


# --- progress --------------------------------------------------------------------------------


class JsonlWriter:
    """Appends one JSON object per line and flushes, so another process can follow the file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "a", buffering=1)

    def __call__(self, event: Event) -> None:
        self._fh.write(json.dumps(event, default=float) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class TqdmReporter:
    """A terminal progress bar per model, fed by the same events as every other listener."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._key: tuple[str, int] | None = None

    def __call__(self, event: Event) -> None:
        from tqdm import tqdm

        kind = event["event"]
        if kind == "step":
            key = (event["model"], event["epoch"])
            if key != self._key:
                self.close()
                self._bar = tqdm(total=event["steps"], desc=f"{event['model']} {event['epoch']}/{event['epochs']}",
                                 leave=True, file=sys.stderr, dynamic_ncols=True)
                self._key = key
            self._bar.n = event["step"]
            self._bar.set_postfix(loss=f"{event['loss']:.4f}", refresh=False)
            self._bar.refresh()
        elif kind == "epoch":
            self.close()
            val = " ".join(f"{k}={v:.3f}" for k, v in event.get("val", {}).items())
            print(f"{event['model']} epoch {event['epoch']}/{event['epochs']}: loss={event['train_loss']:.4f} {val}",
                  file=sys.stderr)
        elif kind in ("done", "error", "cancelled", "info"):
            self.close()
            print(f"[{kind}] {event.get('message', event.get('out', ''))}", file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar, self._key = None, None


class Progress:
    """Fans events out to listeners; throttles step events to a few per second."""

    def __init__(self, listeners: Sequence[ProgressCallback] = (), stop: threading.Event | None = None) -> None:
        self.listeners = list(listeners)
        self.stop = stop or threading.Event()
        self._last_step = 0.0

    def emit(self, event: str, **payload: Any) -> None:
        if event == "step":
            now = time.monotonic()
            if now - self._last_step < 0.25 and payload.get("step") != payload.get("steps"):
                return
            self._last_step = now
        record = {"event": event, "time": time.time(), **payload}
        for listener in self.listeners:
            listener(record)

    def check(self) -> None:
        if self.stop.is_set():
            raise Cancelled()


# --- split -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    train: tuple[str, ...]
    val: tuple[str, ...]
    seed: int


def patient_split(index: DatasetIndex, val_fraction: float, seed: int) -> Split:
    """Patients (never slices) into train/val, stratified by grade (unknown grade is its own stratum)."""
    if len(index.patient_ids) < 4:
        raise TrainError(f"Only {len(index.patient_ids)} patients: at least 4 are needed for a patient-level split.")
    rng = np.random.default_rng(seed)
    strata: dict[str, list[str]] = {}
    for pid in index.patient_ids:
        strata.setdefault(str(index.clinical_for(pid).grade), []).append(pid)
    train: list[str] = []
    val: list[str] = []
    for key in sorted(strata):
        members = sorted(strata[key])
        rng.shuffle(members)
        n_val = int(round(len(members) * val_fraction)) if len(members) > 1 else 0
        if len(members) >= 2:
            n_val = min(max(n_val, 1), len(members) - 1)
        val += members[:n_val]
        train += members[n_val:]
    return Split(tuple(sorted(train)), tuple(sorted(val)), seed)


def fold_split(index: DatasetIndex, fold: int, folds: int, seed: int) -> Split:
    """Hold out fold ``fold`` of a seeded, grade-stratified k-fold partition of all patients.

    Run once per fold, this estimates a recipe on every patient instead of one 15-patient split,
    whose luck of the draw moved per-volume Dice by 0.09 between two seeds.
    """
    if len(index.patient_ids) < 2 * folds:
        raise TrainError(f"Only {len(index.patient_ids)} patients: {folds} folds need at least {2 * folds}.")
    patients = list(index.patient_ids)
    strata = [str(index.clinical_for(p).grade) for p in patients]
    train, val = kfold(patients, strata, folds, seed)[fold]
    return Split(tuple(sorted(train)), tuple(sorted(val)), seed)


def kfold(patients: Sequence[str], labels: Sequence[int | str], k: int, seed: int) -> list[tuple[list[str], list[str]]]:
    """Stratified k folds of patients: (train, held-out) pairs covering every patient once."""
    rng = np.random.default_rng(seed)
    folds: list[list[str]] = [[] for _ in range(k)]
    for c in sorted(set(labels)):
        members = sorted(p for p, y in zip(patients, labels) if y == c)
        rng.shuffle(members)
        for i, p in enumerate(members):
            folds[i % k].append(p)
    return [([p for j, f in enumerate(folds) if j != i for p in f], folds[i]) for i in range(k)]


# --- augmentation ----------------------------------------------------------------------------


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


# --- training loops --------------------------------------------------------------------------


@dataclass
class Prepared:
    """Everything decoded once per run."""

    index: DatasetIndex
    split: Split
    arrays_256: SliceArrays
    device: torch.device
    history: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {"segmentation": [], "grade": []})


def _autocast(device: torch.device) -> Any:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def _cosine_lr(opt: torch.optim.Optimizer, base: float, step: int, total: int, warmup: int) -> None:
    if step < warmup:
        lr = base * (step + 1) / warmup
    else:
        lr = base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
    for g in opt.param_groups:
        g["lr"] = max(lr, base * 0.01)


def _train_loop(model: torch.nn.Module, opt: torch.optim.Optimizer, weights: torch.Tensor,
                batch_loss: Callable[[torch.Tensor], torch.Tensor], *, name: str, epochs: int, samples: int,
                cfg: TrainConfig, gen: torch.Generator, progress: Progress, phase: str | None = None,
                validate: Callable[[], dict[str, float]] | None = None,
                history: list[dict[str, Any]] | None = None) -> dict[str, float]:
    """The one optimisation loop both models use: weighted sampling, cosine LR, progress, stop checks.

    ``batch_loss(indices)`` prepares and augments that batch and returns its loss.
    """
    batch = cfg.batch_size
    steps_per_epoch = samples // batch
    total = steps_per_epoch * epochs
    tags = {"model": name, **({"phase": phase} if phase else {})}
    started, step = time.monotonic(), 0
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.multinomial(weights, steps_per_epoch * batch, replacement=True, generator=gen)
        losses = []
        for s in range(steps_per_epoch):
            progress.check()
            _cosine_lr(opt, cfg.lr, step, total, warmup=max(1, total // 20))
            loss = batch_loss(order[s * batch : (s + 1) * batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            step += 1
            eta = (time.monotonic() - started) / step * (total - step)
            progress.emit("step", **tags, epoch=epoch, epochs=epochs, step=s + 1, steps=steps_per_epoch,
                          loss=float(np.mean(losses[-20:])), eta_s=eta)
        record = {"epoch": epoch, "train_loss": float(np.mean(losses)), "val": validate() if validate else {}}
        if history is not None:
            history.append(record)
        progress.emit("epoch", **tags, epochs=epochs, eta_s=(time.monotonic() - started) / step * (total - step), **record)
    seconds = time.monotonic() - started
    return {"training_seconds": seconds, "images_per_second": step * batch / seconds}


def train_segmentation(cfg: TrainConfig, prep: Prepared, progress: Progress) -> tuple[torch.nn.Module, SegConfig, dict[str, Any]]:
    import segmentation_models_pytorch as smp

    dev = prep.device
    seg_cfg = SegConfig(encoder=cfg.encoder, image_size=cfg.image_size, min_component_px=cfg.min_component_px,
                        flip_tta=cfg.flip_tta)
    torch.manual_seed(cfg.seed)
    model = build_segmentation(seg_cfg)
    lineage = continue_from(cfg, prep.split, model) if cfg.init_from else None
    model = model.to(dev)
    arrays = slice_arrays(prep.index, cfg.image_size)
    train_sel = np.isin(arrays.patient_ids, prep.split.train)
    x_all = torch.from_numpy(normalize_images(arrays.images[train_sel]))
    y_all = torch.from_numpy(arrays.masks[train_sel]).float()[:, None]
    if dev.type == "cuda":
        x_all, y_all = x_all.pin_memory(), y_all.pin_memory()
    dice_loss = smp.losses.DiceLoss(mode="binary", from_logits=True)
    gen = torch.Generator().manual_seed(cfg.seed)

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        xb, yb = augment(x_all[idx].to(dev, non_blocking=True), y_all[idx].to(dev, non_blocking=True), gen)
        with _autocast(dev):
            logits = model(xb)
        logits = logits.float()
        loss = dice_loss(logits, yb) + F.binary_cross_entropy_with_logits(logits, yb)
        return loss + slice_dice_loss(logits, yb) if cfg.slice_dice else loss

    val_sel = np.isin(prep.arrays_256.patient_ids, prep.split.val)

    def validate() -> dict[str, float]:
        if not val_sel.any():
            return {}
        pred = predict_masks(model, seg_cfg, prep.arrays_256.images[val_sel], dev)
        ev = evaluate_segmentation(pred, prep.arrays_256.masks[val_sel], prep.arrays_256.patient_ids[val_sel])
        return {m: ev.metrics[m].value for m in ("per_volume_dice_mean", "tumour_slice_dice")}

    info = _train_loop(model, torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4),
                       torch.where(y_all.flatten(1).amax(1) > 0, 3.0, 1.0),  # tumour slices 3x as likely
                       batch_loss, name="segmentation", epochs=cfg.seg_epochs, samples=cfg.seg_samples, cfg=cfg,
                       gen=gen, progress=progress, validate=validate if cfg.epoch_validation else None,
                       history=prep.history["segmentation"])
    if lineage:
        info["initialised_from"] = lineage
    return model.eval(), seg_cfg, info


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


def same_split(card: dict[str, Any], split: Split) -> bool:
    """Whether a card's models were trained on exactly this split's training patients."""
    theirs = card.get("split", {})
    return list(theirs.get("train", [])) == list(split.train) and list(theirs.get("val", [])) == list(split.val)


def continue_from(cfg: TrainConfig, split: Split, model: torch.nn.Module) -> dict[str, Any]:
    """Load the U-Net of ``cfg.init_from`` into ``model``; returns its lineage for the card.

    Refused unless that model was trained on exactly this run's training patients: starting from a
    model that saw this run's validation patients would leak them into every number in the card.
    """
    src = Path(str(cfg.init_from))
    try:
        card = read_card(src)
        parent, parent_cfg = load_segmentation(src, "cpu")
    except WeightsError as exc:
        raise TrainError(f"--init-from {src}: {exc}") from exc
    if not same_split(card, split):
        raise TrainError(f"--init-from {src} was trained on a different patient split (seed "
                         f"{card.get('split', {}).get('seed')}); continuing from it would leak validation patients "
                         "into training.")
    if parent_cfg.encoder != cfg.encoder:
        raise TrainError(f"--init-from {src} has a {parent_cfg.encoder} encoder, this run a {cfg.encoder} one.")
    model.load_state_dict(parent.state_dict())
    seg = card.get("segmentation", {})
    return {"folder": str(src), "version": card.get("version"), "sha256": card.get("files", {}).get(SEG_FILE, {}).get("sha256"),
            "train_config": card.get("train_config"), "config": seg.get("config"),
            "training_seconds": seg.get("training_seconds"), "initialised_from": seg.get("initialised_from")}


@dataclass
class GradeData:
    """Tumour crops of the training patients (ground-truth masks), their clinical vectors and labels."""

    crops: torch.Tensor
    clinical: torch.Tensor
    labels: torch.Tensor
    patients: np.ndarray


def grade_data(prep: Prepared, patients: Sequence[str], size: int, scale: AgeScale) -> GradeData:
    a = prep.arrays_256
    crops, clin, labels, owners = [], [], [], []
    for pid in patients:
        c = prep.index.clinical_for(pid)
        if c.grade is None:
            continue
        sel = (a.patient_ids == pid) & (a.masks.reshape(len(a.masks), -1).max(1) > 0)
        if not sel.any():
            continue
        full = torch.from_numpy(normalize_images(a.images[sel]))
        crops.append(crop_tumour(full, a.masks[sel], size))
        vec = torch.from_numpy(encode_clinical(Clinical(c.age, c.sex), scale))
        clin.append(vec[None].expand(int(sel.sum()), -1))
        labels.append(torch.full((int(sel.sum()),), float(c.grade == "G3")))
        owners += [pid] * int(sel.sum())
    if not crops:
        raise TrainError("No training patient has both a recorded grade and a tumour slice.")
    return GradeData(torch.cat(crops), torch.cat(clin), torch.cat(labels), np.array(owners))


def fit_grade(cfg: TrainConfig, grade_cfg: GradeConfig, data: GradeData, dev: torch.device, progress: Progress,
              label: str, seg_model: torch.nn.Module | None = None,
              history: list[dict[str, Any]] | None = None) -> tuple[GradeNet, dict[str, Any]]:
    """Train one grade model; sampling gives each class, and each patient within it, equal weight."""
    torch.manual_seed(cfg.seed)
    model = build_grade(grade_cfg)
    transfer = seg_model is not None and cfg.grade_init == "segmentation"
    copied = init_grade_from_segmentation(model, seg_model) if transfer else 0  # type: ignore[arg-type]
    model = model.to(dev)
    counts = {p: int((data.patients == p).sum()) for p in set(data.patients.tolist())}
    n_pat = {c: len({p for p in counts if float(data.labels[data.patients == p][0]) == c}) for c in (0.0, 1.0)}
    w = torch.tensor([1.0 / counts[p] / max(1, n_pat[float(y)]) for p, y in zip(data.patients, data.labels.tolist())])
    gen = torch.Generator().manual_seed(cfg.seed + 1)

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        xb, _ = augment(data.crops[idx].to(dev), None, gen)
        with _autocast(dev):
            logits = model(xb, data.clinical[idx].to(dev))
        return F.binary_cross_entropy_with_logits(logits.float()[:, 0], data.labels[idx].to(dev))

    info = _train_loop(model, torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-3), w, batch_loss,
                       name="grade", epochs=cfg.grade_epochs, samples=cfg.grade_samples, cfg=cfg, gen=gen,
                       progress=progress, phase=label, history=history)
    return model.eval(), {**info, "encoder_tensors_from_segmentation": copied}


@torch.no_grad()
def _patient_probs(model: GradeNet, data: GradeData, patients: Sequence[str], dev: torch.device) -> dict[str, float]:
    out = {}
    for pid in patients:
        sel = torch.from_numpy(data.patients == pid)
        if not sel.any():
            continue
        logits = model(data.crops[sel].to(dev), data.clinical[sel].to(dev))[:, 0].float().cpu().numpy()
        # Crops here come from ground-truth masks; their pixel counts are not kept, so weight equally.
        out[pid] = float(1 / (1 + np.exp(-patient_logit(logits, np.ones_like(logits)))))
    return out


def train_grade(cfg: TrainConfig, prep: Prepared, progress: Progress, seg_model: torch.nn.Module | None,
                seg_cfg: SegConfig | None) -> tuple[GradeNet, GradeConfig, dict[str, Any]]:
    dev = prep.device
    train_ages = [prep.index.clinical_for(p).age for p in prep.split.train]
    known = [a for a in train_ages if a is not None]
    scale = AgeScale(float(np.mean(known)) if known else 45.0, float(np.std(known)) if len(known) > 1 else 13.0)
    grade_cfg = GradeConfig(image_size=cfg.grade_image_size, age_scale=scale)
    data = grade_data(prep, prep.split.train, cfg.grade_image_size, scale)
    report: dict[str, Any] = {}
    started = time.monotonic()

    # k-fold CV over the training patients: more patients behind the numbers than the held-out split.
    if cfg.folds >= 2:
        patients = sorted(set(data.patients.tolist()))
        labels = [int(float(data.labels[data.patients == p][0])) for p in patients]
        if min(labels.count(0), labels.count(1)) < cfg.folds:
            progress.emit("info", message=f"cross-validation skipped: fewer than {cfg.folds} patients of a grade")
        else:
            variants = {"fusion": grade_cfg, "clinical_only": dataclasses.replace(grade_cfg, use_image=False),
                        "image_only": dataclasses.replace(grade_cfg, use_clinical=False)}
            cv: dict[str, Any] = {"folds": cfg.folds, "seed": cfg.seed, "masks": "ground truth", "variants": {}}
            for name, vcfg in variants.items():
                oof: dict[str, float] = {}
                for i, (tr, te) in enumerate(kfold(patients, labels, cfg.folds, cfg.seed)):
                    sel = np.isin(data.patients, tr)
                    sub = GradeData(data.crops[sel], data.clinical[sel], data.labels[sel], data.patients[sel])
                    m, _ = fit_grade(cfg, vcfg, sub, dev, progress, f"cv {name} fold {i + 1}/{cfg.folds}", seg_model)
                    oof.update(_patient_probs(m, data, te, dev))
                y = [labels[patients.index(p)] for p in oof]
                cv["variants"][name] = {k: v.to_dict() for k, v in grade_metrics(y, list(oof.values()), cfg.seed).items()}
                progress.emit("info", message=f"grade CV {name}: AUC {cv['variants'][name]['auc']['value']:.3f}")
            ages = [prep.index.clinical_for(p).age for p in patients]
            # Age-only baseline under the same folds, so it sits beside the CV numbers honestly.
            base: dict[str, float] = {}
            for tr, te in kfold(patients, labels, cfg.folds, cfg.seed):
                probs = age_baseline_probs([ages[patients.index(p)] for p in tr], [labels[patients.index(p)] for p in tr],
                                           [ages[patients.index(p)] for p in te])
                base.update(dict(zip(te, probs)))
            yb = [labels[patients.index(p)] for p in base]
            cv["age_baseline_auc"] = Metric(roc_auc(yb, list(base.values())), bootstrap_ci(roc_auc, yb, list(base.values())),
                                            len(yb), DEFINITIONS["age_baseline_auc"]).to_dict()
            report["cross_validation"] = cv

    model, info = fit_grade(cfg, grade_cfg, data, dev, progress, "final", seg_model, prep.history["grade"])
    info["training_seconds"] = time.monotonic() - started
    report.update(info)
    return model, grade_cfg, report


# --- orchestration ---------------------------------------------------------------------------


def data_fingerprint(index: DatasetIndex) -> dict[str, Any]:
    """Per-patient SHA-256 over its files: enough to tell whether a card's data is the data at hand."""
    per: dict[str, str] = {}
    for pid, slices in index.patients.items():
        h = hashlib.sha256()
        for rec in slices:
            for p in (rec.image_path, rec.mask_path):
                h.update(p.name.encode())
                h.update(p.read_bytes())
        per[pid] = h.hexdigest()
    csv = index.root / "data.csv"
    return {"n_patients": len(per), "n_slices": index.n_slices, "patient_sha256": per,
            "data_csv_sha256": hashlib.sha256(csv.read_bytes()).hexdigest() if csv.is_file() else None}


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("torch", "torchvision", "segmentation-models-pytorch", "timm", "numpy", "safetensors"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def _metrics_dict(metrics: dict[str, Metric]) -> dict[str, Any]:
    return {k: m.to_dict() for k, m in metrics.items()}


def run(cfg: TrainConfig, listeners: Sequence[ProgressCallback] = (), stop: threading.Event | None = None) -> Path:
    """Train what ``cfg.task`` asks for and publish a complete weights folder at ``cfg.out``."""
    cfg.validate()
    progress = Progress(listeners, stop)
    started = time.monotonic()
    try:
        device = choose_device(cfg.device)
    except DeviceError as exc:
        raise TrainError(str(exc)) from exc
    torch.set_num_threads(cfg.threads or max(1, os.cpu_count() or 1))
    if cfg.data is None:
        from lggdemo.sources import choose_dataset

        cfg.data = str(choose_dataset().root)
    try:
        index = scan_dataset(cfg.data)
    except DatasetError as exc:
        raise TrainError(str(exc)) from exc
    split = fold_split(index, *cfg.fold, cfg.seed) if cfg.fold else patient_split(index, cfg.val_fraction, cfg.seed)
    out = Path(cfg.out)
    source = Path(cfg.complete_from or cfg.init_from or (out if (out / CARD_FILE).is_file() else active_dir()))
    want_seg, want_grade = cfg.task in ("seg", "all"), cfg.task in ("grade", "all")
    progress.emit("start", task=cfg.task, preset=cfg.preset, device=str(device), device_name=describe(device),
                  models=[m for m, w in (("segmentation", want_seg), ("grade", want_grade)) if w],
                  epochs={"segmentation": cfg.seg_epochs, "grade": cfg.grade_epochs},
                  patients={"train": len(split.train), "val": len(split.val)}, data=str(index.root))
    prep = Prepared(index, split, slice_arrays(index, 256), device)
    card: dict[str, Any] = {}

    seg_model: torch.nn.Module | None = None
    seg_cfg: SegConfig | None = None
    if want_seg:
        seg_model, seg_cfg, seg_info = train_segmentation(cfg, prep, progress)
    else:
        try:
            seg_model, seg_cfg = load_segmentation(source, device)
        except WeightsError:
            progress.emit("info", message=f"no segmentation model in {source}: grade validation uses true masks")

    val_sel = np.isin(prep.arrays_256.patient_ids, split.val)
    val_pred = None
    if seg_model is not None and seg_cfg is not None:
        val_pred = predict_masks(seg_model, seg_cfg, prep.arrays_256.images[val_sel], device)
    if want_seg and seg_cfg is not None and val_pred is not None:
        ev = evaluate_segmentation(val_pred, prep.arrays_256.masks[val_sel], prep.arrays_256.patient_ids[val_sel])
        card["segmentation"] = {"config": dataclasses.asdict(seg_cfg), "trained_in_this_run": True,
                                "metrics": _metrics_dict(ev.metrics), "per_patient_dice": ev.per_patient,
                                "history": prep.history["segmentation"], **seg_info}

    grade_model: GradeNet | None = None
    grade_cfg: GradeConfig | None = None
    val_arrays = SliceArrays(prep.arrays_256.images[val_sel], prep.arrays_256.masks[val_sel],
                             prep.arrays_256.patient_ids[val_sel], prep.arrays_256.numbers[val_sel])
    masks = val_pred if val_pred is not None else val_arrays.masks
    masks_text = "predicted by the segmentation model" if val_pred is not None else "ground truth"
    if want_grade:
        grade_model, grade_cfg, grade_info = train_grade(cfg, prep, progress, seg_model, seg_cfg)
        card["grade"] = {"config": dataclasses.asdict(grade_cfg), "trained_in_this_run": True,
                         **_grade_validation(grade_model, grade_cfg, val_arrays, masks, index, split, device, cfg.seed),
                         "validation_masks": masks_text, "history": prep.history["grade"], **grade_info}
    elif want_seg and val_pred is not None:
        # The grade model is copied, but it crops where the new U-Net draws: re-measure it with those masks
        # (only on the split it was trained for: otherwise its "validation" patients include its training ones).
        try:
            kept, kept_cfg = load_grade(source, device)
            source_card = read_card(source)
            comparable = same_split(source_card, split) and "held_out_metrics" not in source_card.get("grade", {})
        except WeightsError:
            comparable = False
        if comparable:
            card["grade"] = {**_grade_validation(kept, kept_cfg, val_arrays, masks, index, split, device, cfg.seed),
                             "validation_masks": "predicted by this run's segmentation model"}

    # --- publish: nothing has touched `out` until here ---
    progress.check()
    with _signals_deferred():
        _publish(cfg, out, source, card, index, split, device, seg_model, seg_cfg, grade_model, grade_cfg,
                 time.monotonic() - started)
    progress.emit("done", out=str(out), seconds=time.monotonic() - started,
                  metrics={m: card[m]["metrics"] for m in ("segmentation", "grade") if "metrics" in card.get(m, {})})
    return out


def _grade_validation(model: GradeNet, config: GradeConfig, val_arrays: SliceArrays, masks: np.ndarray,
                      index: DatasetIndex, split: Split, device: torch.device, seed: int) -> dict[str, Any]:
    """Held-out grade metrics, with the age-only baseline fitted on the training patients beside them."""
    g = evaluate_grade(model, config, val_arrays, masks, index, split.val, device, seed)
    metrics = _metrics_dict(g.metrics)
    labelled_train = [p for p in split.train if index.clinical_for(p).grade is not None]
    if g.labels and labelled_train:
        probs = age_baseline_probs([index.clinical_for(p).age for p in labelled_train],
                                   [int(index.clinical_for(p).grade == "G3") for p in labelled_train],
                                   [index.clinical_for(p).age for p in g.labels])
        y = list(g.labels.values())
        metrics["age_baseline_auc"] = Metric(roc_auc(y, probs), bootstrap_ci(roc_auc, y, probs, seed=seed),
                                             len(y), DEFINITIONS["age_baseline_auc"]).to_dict()
    return {"metrics": metrics, "per_patient_p_g3": g.per_patient, "labels": g.labels}


def _publish(cfg: TrainConfig, out: Path, source: Path, card: dict[str, Any], index: DatasetIndex, split: Split,
             device: torch.device, seg_model: torch.nn.Module | None, seg_cfg: SegConfig | None,
             grade_model: GradeNet | None, grade_cfg: GradeConfig | None, seconds: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {}
    old_card: dict[str, Any] = {}
    try:
        old_card = read_card(source)
    except WeightsError:
        pass
    for name, model, mcfg, key in ((SEG_FILE, seg_model, seg_cfg, "segmentation"), (GRADE_FILE, grade_model, grade_cfg, "grade")):
        if key in card and model is not None and mcfg is not None:
            files[name] = {"sha256": save_model(out / name, model, mcfg), "dtype": "float16"}
        elif (source / name).is_file() and key in old_card:
            if source.resolve() != out.resolve():
                tmp = out / f".{name}.copy"
                shutil.copyfile(source / name, tmp)
                os.replace(tmp, out / name)
            files[name] = old_card.get("files", {}).get(name)
            card[key] = {**old_card[key], **card.get(key, {}), "trained_in_this_run": False, "copied_from": str(source)}
            if not same_split(old_card, split) or "held_out_metrics" in old_card[key]:
                # Its numbers were measured on another split's validation patients, some of which are this
                # split's training patients: no held-out claim about this card's split can be made for it.
                for k in ("metrics", "per_patient_dice", "per_patient_p_g3", "labels", "validation_masks"):
                    card[key].pop(k, None)
                card[key]["held_out_metrics"] = "withheld: copied from a model trained on another patient split"
    created = dt.datetime.now(dt.timezone.utc)
    card = {
        "version": created.strftime("%Y%m%dT%H%M%SZ") + f"-{cfg.preset}-s{cfg.seed}",
        "created": created.isoformat(timespec="seconds"),
        "intended_use": lggdemo.NOT_FOR_DIAGNOSIS,
        "trainer": "python -m lggdemo.train",
        "train_config": dataclasses.asdict(cfg),
        "input": {"slice": "256×256 RGB uint8: R pre-contrast, G FLAIR, B post-contrast",
                  "normalisation": "per slice and channel: z-score over head pixels (any channel > 10), clipped to ±6; "
                                   "bilinear resize to the model's input size",
                  "grade_input": "tumour crop (mask bounding box + 25% margin, square) of the 256² normalised slice, "
                                 "resized to the grade model's input size, plus age (standardised), sex and "
                                 "missing-value indicators"},
        "storage": "safetensors, float16; upcast to float32 when loaded",
        "files": files,
        "data": {"root": str(index.root), **data_fingerprint(index)},
        "split": {**({"method": "patient-level, stratified by grade", "val_fraction": cfg.val_fraction} if not cfg.fold
                     else {"method": "patient-level k-fold, stratified by grade; one fold held out",
                           "fold": cfg.fold[0], "folds": cfg.fold[1]}),
                  "seed": split.seed, "train": list(split.train), "val": list(split.val)},
        **{k: card[k] for k in ("segmentation", "grade") if k in card},
        "metric_definitions": DEFINITIONS,
        "device": describe(device),
        "library_versions": library_versions(),
        "training_seconds": seconds,
    }
    write_card(out, card)


class _signals_deferred:
    """Hold SIGTERM/SIGINT while the weights are published, then deliver them."""

    def __enter__(self) -> None:
        self._pending: list[int] = []
        self._old: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, lambda s, f: self._pending.append(s))

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        for sig in self._pending:
            os.kill(os.getpid(), sig)


# --- benchmark -------------------------------------------------------------------------------


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
            with _autocast(dev):
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


# --- CLI -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m lggdemo.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=TASKS, default="all")
    ap.add_argument("--data", default=None, help="kaggle_3m folder (default: the app's active dataset)")
    ap.add_argument("--out", default=None, help="weights folder to write (default: weights/)")
    ap.add_argument("--preset", choices=list(PRESETS), default="quick")
    ap.add_argument("--epochs", type=int, default=None, help="epochs for each model (overrides the preset)")
    ap.add_argument("--image-size", type=int, default=None, help="U-Net input side, a multiple of 32")
    ap.add_argument("--grade-image-size", type=int, default=None, help="grade crop side, a multiple of 32")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--samples-per-epoch", type=int, default=None, help="slices drawn per epoch (both models)")
    ap.add_argument("--encoder", default=None, help="smp encoder of the U-Net (e.g. resnet18, resnet34, resnet50)")
    ap.add_argument("--folds", type=int, default=None, help="grade k-fold CV over training patients (0 = off)")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fold", type=_fold_arg, default=None, metavar="I/K",
                    help="validate on fold I of a k-fold patient partition (cross-validating a recipe), "
                         "instead of the held-out fraction")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--progress-file", default=None, help="append JSON-lines progress events here")
    ap.add_argument("--complete-from", default=None,
                    help="weights folder to copy the model not trained in this run from "
                         "(default: --init-from, else --out, else active)")
    ap.add_argument("--init-from", default=None,
                    help="weights folder whose U-Net this run continues (the refine preset); same patient split required")
    ap.add_argument("--no-epoch-validation", action="store_true",
                    help="skip the per-epoch validation curve (saves time; the weights are the same)")
    ap.add_argument("--no-bar", action="store_true", help="no terminal progress bar")
    return ap


def _fold_arg(text: str) -> tuple[int, int]:
    try:
        i, k = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/K such as 0/3, got {text!r}") from None
    return i, k


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    cfg = TrainConfig.from_preset(
        args.preset, task=args.task, data=args.data, out=args.out, image_size=args.image_size,
        grade_image_size=args.grade_image_size, batch_size=args.batch_size, encoder=args.encoder, folds=args.folds,
        device=args.device, seed=args.seed, fold=args.fold, threads=args.threads, progress_file=args.progress_file,
        complete_from=args.complete_from, init_from=args.init_from,
        epoch_validation=False if args.no_epoch_validation else None,
        seg_epochs=args.epochs, grade_epochs=args.epochs,
        seg_samples=args.samples_per_epoch, grade_samples=args.samples_per_epoch,
    )
    return cfg


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    listeners: list[ProgressCallback] = []
    writer = JsonlWriter(args.progress_file) if args.progress_file else None
    if writer:
        listeners.append(writer)
    if not args.no_bar:
        listeners.append(TqdmReporter())
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    def emit(event: str, **payload: Any) -> None:
        for listener in listeners:
            listener({"event": event, "time": time.time(), **payload})

    try:
        cfg = config_from_args(args)
        run(cfg, listeners, stop)
        return 0
    except TrainError as exc:
        emit("error", message=str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Cancelled:
        emit("cancelled", message="stopped on request; the previous weights are unchanged")
        return 130
    except Exception as exc:  # the job manager shows this line; the traceback goes to the log
        import traceback

        traceback.print_exc()
        emit("error", message=f"{exc.__class__.__name__}: {exc}")
        return 1
    finally:
        if writer:
            writer.close()


if __name__ == "__main__":
    raise SystemExit(main())
