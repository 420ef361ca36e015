"""What a training run is asked to do: :class:`TrainConfig`, its presets and its checks.

Torch-free on purpose: the job manager and the sidebar read the same config (and the same checks)
without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass
class TrainConfig:
    task: str = "all"
    data: str | None = None
    out: str = str(Path(__file__).resolve().parents[2] / "weights")
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
