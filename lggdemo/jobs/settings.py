"""What a person may ask the trainer for from the sidebar, its checks, and the trainer command it becomes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lggdemo.data import DatasetIndex

#: Task codes of ``python -m lggdemo.train --task`` and how the UI names them.
TASKS: dict[str, str] = {"all": "Both", "seg": "Segmentation", "grade": "Grade"}
PRESETS: tuple[str, ...] = ("quick", "full")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")
#: Above the slices' 256×256 the trainer only upsamples, and refuses.
MAX_IMAGE_SIZE = 256
#: Exit code of the trainer when SIGTERM/SIGINT stopped it between steps.
EXIT_CANCELLED = 130
EXIT_INVALID = 2


@dataclass(frozen=True)
class TrainSettings:
    """What the sidebar lets a person choose; ``None`` means the preset's default."""

    task: str = "all"  # "seg" | "grade" | "all"
    preset: str = "quick"  # "quick" | "full"
    epochs: int | None = None
    image_size: int | None = None
    batch_size: int | None = None
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "mps"
    seed: int = 0



def validate_settings(
    settings: TrainSettings, index: DatasetIndex | None, *, dataset_error: str | None = None
) -> list[str]:
    """Every reason these settings cannot train, in words for the sidebar; empty when they can.

    Checked here, before launching, so a person is told at once instead of reading a trainer log. The
    sidebar's own fields get one message each; the trainer's rules (``TrainConfig.validate``, its
    patient-level split) are then asked as well, so nothing it would refuse gets launched.
    """
    problems: list[str] = []
    if settings.task not in TASKS:
        problems.append(f"Unknown task {settings.task!r}: choose segmentation, grade or both.")
    if settings.preset not in PRESETS:
        problems.append(f"Unknown preset {settings.preset!r}: choose quick or full.")
    if settings.epochs is not None and settings.epochs < 1:
        problems.append(f"Epochs must be at least 1 (got {settings.epochs}).")
    if settings.image_size is not None and (
        settings.image_size < 32 or settings.image_size % 32 or settings.image_size > MAX_IMAGE_SIZE
    ):
        problems.append(
            f"Image size must be a multiple of 32 between 32 and {MAX_IMAGE_SIZE} "
            f"(the U-Net halves it five times; the slices are 256×256); got {settings.image_size}."
        )
    if settings.batch_size is not None and settings.batch_size < 2:
        problems.append(
            f"Batch size must be at least 2 (batch normalisation needs two samples); got {settings.batch_size}."
        )
    if settings.device not in DEVICES:
        problems.append(f"Unknown device {settings.device!r}: choose auto, cpu, cuda or mps.")
    else:
        from lggdemo.device import DeviceError, choose_device

        try:
            choose_device(settings.device)
        except DeviceError as exc:
            problems.append(str(exc))
    from lggdemo.train import TrainConfig, TrainError, patient_split  # heavy (torch, smp): only when asked

    config = None
    if not problems:
        try:
            config = TrainConfig.from_preset(
                settings.preset, task=settings.task, image_size=settings.image_size, batch_size=settings.batch_size,
                seg_epochs=settings.epochs, grade_epochs=settings.epochs, device=settings.device, seed=settings.seed,
            )  # fmt: skip
            config.validate()
        except (TrainError, TypeError) as exc:
            problems.append(f"The trainer refuses these settings: {exc}")
    if dataset_error:
        problems.append(f"No usable dataset: {dataset_error}")
    elif index is None:
        problems.append("No dataset to train on: choose a kaggle_3m folder in the sidebar.")
    else:
        try:
            patient_split(index, config.val_fraction if config else TrainConfig.val_fraction, settings.seed)
        except TrainError as exc:
            problems.append(f"The dataset is too small: {exc}")
        else:
            if settings.task in ("grade", "all"):
                grades = {index.clinical_for(p).grade for p in index.patient_ids} - {None}
                if len(grades) < 2:
                    problems.append(
                        "The grade model needs patients of both grades (G2 and G3) in data.csv; "
                        f"found {', '.join(sorted(grades)) or 'none'}."
                    )
    return problems


CommandBuilder = Callable[..., list[str]]


def trainer_args(
    settings: TrainSettings, *, data: Path, out: Path, progress: Path, complete_from: Path | None
) -> list[str]:
    """The CLI arguments of ``python -m lggdemo.train`` for these settings (preset defaults left to it)."""
    args = ["--task", settings.task, "--data", str(data), "--out", str(out), "--device", settings.device,
            "--seed", str(settings.seed), "--preset", settings.preset, "--progress-file", str(progress)]  # fmt: skip
    for flag, value in (("--epochs", settings.epochs), ("--image-size", settings.image_size),
                        ("--batch-size", settings.batch_size)):  # fmt: skip
        if value is not None:
            args += [flag, str(int(value))]
    if complete_from is not None:
        args += ["--complete-from", str(complete_from)]
    return args


def trainer_command(settings: TrainSettings, **paths: Any) -> list[str]:
    """The project's trainer, run by this very interpreter (the app's venv)."""
    return [sys.executable, "-m", "lggdemo.train", *trainer_args(settings, **paths)]
