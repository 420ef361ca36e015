"""What a person may ask the trainer for from the sidebar, its checks, and the trainer command it becomes.

Nothing here is a second schema: :class:`TrainSettings` fields are option names of the trainer's
config (``lggdemo.train.config.OPTIONS``), so their help text, bounds and choices, the arguments they
become and the rules they are checked by are the trainer's own.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lggdemo.data.kaggle import DatasetIndex
from lggdemo.device import DeviceError, choose_device
from lggdemo.train.config import OPTIONS, PRESET_REQUIRES, TrainConfig, TrainError, config_from_options, option_args
from lggdemo.train.config import PRESETS as TRAINER_PRESETS
from lggdemo.train.events import DEVICES, EXIT_CANCELLED, EXIT_INVALID, TASK_MODELS, TASKS
from lggdemo.train.finetune_data import fine_tune_problems
from lggdemo.train.split import patient_split

#: The presets the sidebar offers: those that need nothing but these settings (refine needs --init-from).
PRESETS: tuple[str, ...] = tuple(p for p in TRAINER_PRESETS if p not in PRESET_REQUIRES)
#: Above the slices' 256×256 the trainer only upsamples, and refuses.
MAX_IMAGE_SIZE: int = OPTIONS["image_size"].setting.maximum or 256

__all__ = ["DEVICES", "EXIT_CANCELLED", "EXIT_INVALID", "MAX_IMAGE_SIZE", "PRESETS", "TASKS", "CommandBuilder",
           "TrainSettings", "trainer_args", "trainer_command", "validate_settings"]


@dataclass(frozen=True)
class TrainSettings:
    """What the sidebar lets a person choose; ``None`` means the preset's default. Field names are trainer options."""

    task: str = "all"  # a key of TASKS
    preset: str = "quick"  # one of PRESETS
    epochs: int | None = None
    image_size: int | None = None
    batch_size: int | None = None
    device: str = "auto"  # one of DEVICES
    seed: int = 0
    init_from: str | None = None  # a weights folder whose U-Net this run continues (a fine-tune: the active one)
    corrections: str | None = None  # a folder of corrected slices to fine-tune on (lggdemo.corrections)
    corrections_weight: int | None = None

    def to_config(self) -> TrainConfig:
        """The trainer's config for these settings, built the way its command line builds it."""
        return config_from_options(asdict(self))


def validate_settings(
    settings: TrainSettings, index: DatasetIndex | None, *, dataset_error: str | None = None
) -> list[str]:
    """Every reason these settings cannot train, in words for the sidebar; empty when they can.

    Checked here, before launching, so a person is told at once instead of reading a trainer log: the
    trainer's own rules (:meth:`TrainConfig.problems`), the device it would pick, its patient-level split.
    """
    config = settings.to_config()
    problems = config.problems()
    if settings.device in DEVICES:

        try:
            choose_device(settings.device)
        except DeviceError as exc:
            problems.append(str(exc))

    if settings.corrections and not problems:
        problems += fine_tune_problems(config, index)
    if dataset_error:
        problems.append(f"No usable dataset: {dataset_error}")
    elif index is None:
        problems.append("No dataset to train on: choose a kaggle_3m folder in the sidebar.")
    else:
        try:
            patient_split(index, config.val_fraction, settings.seed)
        except TrainError as exc:
            problems.append(f"The dataset is too small: {exc}")
        else:
            if "grade" in TASK_MODELS.get(settings.task, ()):
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
    paths = {"data": data, "out": out, "progress_file": progress, "complete_from": complete_from}
    return option_args({**asdict(settings), **{k: None if v is None else str(v) for k, v in paths.items()}})


def trainer_command(settings: TrainSettings, **paths: Any) -> list[str]:
    """The project's trainer, run by this very interpreter (the app's venv)."""
    return [sys.executable, "-m", "lggdemo.train", *trainer_args(settings, **paths)]
