"""What a training run is asked to do: :class:`TrainConfig`, its presets, and the one schema of its settings.

Every field a person may set carries a :class:`Setting` in its metadata: the option name, help text,
bounds and choices. The command line (``lggdemo.train.cli``), the job manager's settings and the
sidebar form (``lggdemo.jobs.settings``, ``lggdemo.ui.train.sidebar``) are derived from it, and
:meth:`TrainConfig.problems` is the only place the rules are checked. Imports no torch: the job
manager and the sidebar read it without loading the models.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from lggdemo.train.events import DEVICES
from lggdemo.train.events import TASKS as TASK_NAMES

PRESETS: dict[str, dict[str, Any]] = {
    # A few minutes on a 2-core CPU: enough for a class to watch the loss fall.
    "quick": dict(encoder="resnet18", image_size=128, seg_epochs=2, seg_samples=384, grade_image_size=64,
                  grade_epochs=2, grade_samples=256, folds=0, batch_size=16),
    # Stage 1 of the earlier shipped weights (fp32), with the grade model's inner 4-fold CV: sizes that fit one
    # session on a 2-core CPU (their record: docs/experiments/weights-2026-11-25.md).
    "full": dict(encoder="resnet18", image_size=128, seg_epochs=24, seg_samples=1200, grade_image_size=64,
                 grade_epochs=8, grade_samples=768, folds=4, batch_size=16),
    # A second stage for a `full` run's U-Net (`--init-from`): a warm restart at a lower rate with
    # the per-slice Dice term, because that U-Net underfits its own training patients, worst on small
    # tumours. Adopted by cross-validation as their stage 2; `bundled` runs the same stage in-process (refine_epochs).
    "refine": dict(encoder="resnet18", image_size=128, seg_epochs=10, seg_samples=1200, lr=3e-4, slice_dice=True,
                   grade_image_size=64, grade_epochs=8, grade_samples=768, folds=4, batch_size=16),
    # The shipped weights in one command: the U-Net's two stages in one run (stage 1, then the refine
    # stage -- lr 3e-4, per-slice Dice, warm restart -- continued in-process, `refine_epochs`), then the grade
    # model, on EVERY patient given: no validation split, because the 3-fold cross-validation of this same recipe
    # (lggdemo-crossval, recorded into the card) is its estimate. The grade model trains as in `full`
    # but without its inner 4-fold CV (12 more fits, which would break the 30-minute budget; the cross-validation's
    # out-of-fold grade replaces it).
    # Its recipe won a cross-validation of four candidates under a rule written before any fold ran (candidate C1:
    # 128 px, 31 -> 13 epochs of 1,200 slices, measured in bf16 + channels-last; docs/experiments/selection-rule.txt,
    # docs/experiments/cv21/compare.json). Precision "auto" keeps bf16 on a CPU with native bf16 (and on CUDA) and
    # trains in fp32 elsewhere, where emulated bf16 is several times slower; an fp32 run carries the bf16 folds'
    # estimate, labelled as such (lggdemo.evaluation.crossval.record, weights/README.md).
    "bundled": dict(encoder="resnet18", image_size=128, seg_epochs=31, refine_epochs=13, seg_samples=1200,
                    precision="auto", grade_image_size=64, grade_epochs=8, grade_samples=768, folds=0,
                    batch_size=16, val_fraction=0.0),
}
TASKS: tuple[str, ...] = tuple(TASK_NAMES)
#: Training precision (see ``lggdemo.train.loop.resolve_precision``): auto = bf16 on CUDA and on a CPU with native
#: bf16 (fp16 on an older GPU), float32 elsewhere.
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
#: Presets that need an option the preset cannot supply, and the message when it is missing.
PRESET_REQUIRES: dict[str, tuple[str, str]] = {
    "refine": ("init_from", "the refine preset continues a trained U-Net: give the weights folder with --init-from."),
}
#: The slices are 256×256: a larger model input only upsamples them.
SLICE_SIDE = 256


class TrainError(ValueError):
    """Settings or data that make training impossible; the message is for the person who asked."""


@dataclass(frozen=True)
class Setting:
    """How one :class:`TrainConfig` field is asked for (its option) and what values it accepts.

    Fields that share an ``option`` (``--epochs`` sets both models' epochs) share one Setting.
    ``negate``: the option is a switch whose presence sets the field to False (``--no-epoch-validation``).
    """

    option: str
    help: str | None = None
    label: str = ""
    type: Callable[[str], Any] = str
    minimum: int | None = None
    maximum: int | None = None
    multiple: int | None = None
    choices: tuple[str, ...] = ()
    why: str = ""
    negate: bool = False
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.option.replace("_", "-")

    @property
    def name(self) -> str:
        return self.label or self.option.replace("_", " ").capitalize()

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable for this setting, in words; ``None`` when it is (or is unset)."""
        if value is None or isinstance(value, bool):
            return None
        if self.choices:
            if value not in self.choices:
                return f"Unknown {self.name.lower()} {value!r}: choose {', '.join(self.choices)}."
            return None
        if not isinstance(value, int):
            return None
        because = f": {self.why}" if self.why else ""
        if self.multiple:
            if value < (self.minimum or 0) or value % self.multiple or (self.maximum is not None and value > self.maximum):
                span = f"between {self.minimum} and {self.maximum}" if self.maximum is not None else f"at least {self.minimum}"
                return f"{self.name} must be a multiple of {self.multiple} {span} (got {value}){because}."
        elif self.minimum is not None and value < self.minimum:
            return f"{self.name} must be at least {self.minimum} (got {value}){because}."
        elif self.maximum is not None and value > self.maximum:
            return f"{self.name} must be at most {self.maximum} (got {value}){because}."
        return None


def _fold(text: str) -> tuple[int, int]:
    try:
        i, k = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/K such as 0/3, got {text!r}") from None
    return i, k


def _set(default: Any, setting: Setting | None = None, **kw: Any) -> Any:
    return field(default=default, metadata={"setting": setting or Setting(**kw)})


_EPOCHS = Setting("epochs", "epochs for each model (overrides the preset)", "Epochs", int, minimum=1)
_SAMPLES = Setting("samples_per_epoch", "slices drawn per epoch (both models)", "Samples per epoch", int, minimum=1)
_WEIGHTS = Path(__file__).resolve().parents[2] / "weights"


@dataclass
class TrainConfig:
    task: str = _set("all", option="task", label="Task", choices=TASKS)
    data: str | None = _set(None, option="data", help="kaggle_3m folder (default: the app's active dataset)")
    out: str = _set(str(_WEIGHTS), option="out", help="weights folder to write (default: weights/)")
    preset: str = _set("quick", option="preset", label="Preset", choices=tuple(PRESETS))
    encoder: str = _set("resnet18", option="encoder", help="smp encoder of the U-Net (e.g. resnet18, resnet34, resnet50)")
    image_size: int = _set(128, option="image_size", help="U-Net input side, a multiple of 32", label="Image size", type=int,
                           minimum=32, maximum=SLICE_SIDE, multiple=32,
                           why="the U-Net halves it five times; the slices are 256×256")
    seg_epochs: int = _set(2, _EPOCHS)
    seg_samples: int = _set(384, _SAMPLES)  # slices drawn per epoch (tumour slices 3x as likely)
    grade_image_size: int = _set(64, option="grade_image_size", help="grade crop side, a multiple of 32",
                                 label="Grade image size", type=int, minimum=32, multiple=32)
    grade_epochs: int = _set(2, _EPOCHS)
    grade_samples: int = _set(256, _SAMPLES)
    folds: int = _set(0, option="folds", help="grade k-fold CV over training patients (0 = off)", type=int)
    batch_size: int = _set(16, option="batch_size", label="Batch size", type=int, minimum=2,
                           why="batch normalisation needs two samples")
    lr: float = 1e-3
    # patients held out for validation (0: train on every patient, as the bundled preset does); --fold overrides it
    val_fraction: float = 0.2
    seed: int = _set(0, option="seed", type=int)
    device: str = _set("auto", option="device", label="Device", choices=DEVICES)
    precision: str = _set("auto", option="precision", label="Precision", choices=PRECISIONS,
                          help="autocast dtype: auto (bf16 + channels-last on CUDA and on a CPU with native bf16 -- "
                               "AVX-512 BF16 or AMX -- where it is about 3x faster; fp32 elsewhere), fp32, or bf16 "
                               "(several times slower than fp32 on a CPU without native bf16: the run warns)")
    min_component_px: int = 64
    # test-time flip (inference only: no weight depends on it); off since the rule of docs/experiments/selection-rule.txt
    # measured it gaining nothing out of fold (docs/experiments/flip-tta-oof.md)
    flip_tta: bool = False
    grade_init: str = "segmentation"  # "segmentation" (when the U-Net encoder is a resnet50) | "scratch"
    progress_file: str | None = _set(None, option="progress_file", help="append JSON-lines progress events here")
    # where the model not trained in this run is copied from
    complete_from: str | None = _set(None, option="complete_from",
                                     help="weights folder to copy the model not trained in this run from "
                                          "(default: --init-from, else --out, else active)")
    # weights folder whose U-Net this run continues (same split required)
    init_from: str | None = _set(None, option="init_from", help="weights folder whose U-Net this run continues (the "
                                 "refine preset); same patient split required")
    # corrected slices (a kaggle_3m folder, see lggdemo.corrections) to fine-tune the --init-from U-Net on
    corrections: str | None = _set(None, option="corrections", metavar="DIR",
                                   help="folder of corrected slices (kaggle_3m layout, the app's runs/corrections) "
                                        "added to the U-Net's training data of an --init-from run; never validated on")
    corrections_weight: int = _set(10, option="corrections_weight", label="Corrections weight", type=int, minimum=1,
                                   maximum=100, help="draw each corrected slice this many times as often as a tumour "
                                                     "slice of the dataset")
    slice_dice: bool = False  # add a Dice term per tumour slice to the batch Dice (see slice_dice_loss)
    refine_epochs: int = _set(0, option="refine_epochs", type=int, minimum=0,
                              help="then continue the U-Net in the same run for this many epochs as the refine "
                                   "preset would (lr 3e-4, per-slice Dice, warm restart); 0 = one stage")
    small_tumour_boost: int = _set(1, option="small_tumour_boost", type=int, minimum=1, maximum=20,
                                   help="draw tumour slices whose true area is under 256 px (at 256x256) this many "
                                        "times as often as other tumour slices (1 = no boost)")
    # score the U-Net on the validation patients after every epoch (a curve only)
    epoch_validation: bool = _set(True, option="no_epoch_validation", negate=True,
                                  help="skip the per-epoch validation curve (saves time; the weights are the same)")
    # (i, k): hold out fold i of a k-fold partition instead of val_fraction
    fold: tuple[int, int] | None = _set(None, option="fold", type=_fold, metavar="I/K",
                                        help="validate on fold I of a k-fold patient partition (cross-validating a "
                                             "recipe), instead of the held-out fraction")
    threads: int | None = _set(None, option="threads", type=int, minimum=1,
                               help="CPU threads (default: OMP_NUM_THREADS where set, else every core; under "
                                    "torchrun each rank's share of the cores)")

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> TrainConfig:
        if preset not in PRESETS:
            raise TrainError(f"Unknown preset {preset!r}: choose {', '.join(PRESETS)}.")
        values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
        return cls(preset=preset, **values)

    def refine_stage(self) -> TrainConfig:
        """The second U-Net stage of a run with ``refine_epochs``: this run's settings with the refine preset's
        learning rate and per-slice Dice, for ``refine_epochs`` epochs -- what ``--preset refine --init-from``
        with the same options trains, so both are one recipe (``lggdemo.evaluation.crossval.same_recipe``)."""
        refine = PRESETS["refine"]
        return replace(self, seg_epochs=self.refine_epochs, lr=refine["lr"], slice_dice=refine["slice_dice"],
                       refine_epochs=0, init_from=None)

    def problems(self) -> list[str]:
        """Every reason this config cannot train, in words; empty when it can. The one place the rules live."""
        found: list[str] = []
        for f in fields(self):
            setting = f.metadata.get("setting")
            message = setting.problem(getattr(self, f.name)) if setting else None
            if message and message not in found:
                found.append(message)
        if found:
            return found  # the rules below assume each value is in range
        if self.seg_samples < self.batch_size or self.grade_samples < self.batch_size:
            found.append("Samples per epoch must be at least one batch.")
        if not 0 <= self.val_fraction < 0.9:
            found.append("Validation fraction must be at least 0 and below 0.9.")
        if self.folds == 1 or self.folds < 0:
            found.append("Folds must be 0 (no cross-validation) or at least 2.")
        if self.fold is not None and not (self.fold[1] >= 2 and 0 <= self.fold[0] < self.fold[1]):
            found.append(f"Fold must be I/K with K at least 2 and 0 <= I < K (got {self.fold[0]}/{self.fold[1]}).")
        if self.corrections and not self.init_from:
            found.append("--corrections fine-tunes a trained U-Net: give its weights folder with --init-from.")
        if self.corrections and self.task == "grade":
            found.append("--corrections trains the U-Net: use --task seg (or all), not grade.")
        required = PRESET_REQUIRES.get(self.preset)
        if required and not getattr(self, required[0]):
            found.append(required[1])
        return found

    def validate(self) -> None:
        problems = self.problems()
        if problems:
            raise TrainError(" ".join(problems))


@dataclass(frozen=True)
class Option:
    """One option of the command line and the job settings: its :class:`Setting` and the fields it sets."""

    setting: Setting
    fields: tuple[str, ...]

    @property
    def flag(self) -> str:
        return self.setting.flag


def _options() -> dict[str, Option]:
    grouped: dict[str, Option] = {}
    for f in fields(TrainConfig):
        setting = f.metadata.get("setting")
        if setting is not None:
            known = grouped.get(setting.option)
            grouped[setting.option] = Option(setting, (known.fields if known else ()) + (f.name,))
    return grouped


#: Every option, in field order: ``OPTIONS["image_size"].setting.help``, ``.flag``, ``.fields``.
OPTIONS: dict[str, Option] = _options()


def config_from_options(options: Mapping[str, Any]) -> TrainConfig:
    """The config that option values ask for (CLI arguments, job settings): the preset's values, then each option given.

    Unset options (``None``) keep the preset's value. An unknown preset is kept, to be named by
    :meth:`TrainConfig.problems`, rather than raised here, so every problem is reported at once.
    """
    preset = options.get("preset") or TrainConfig.preset
    values: dict[str, Any] = dict(PRESETS.get(preset, {}))
    for name, option in OPTIONS.items():
        value = options.get(name)
        if value is None or name == "preset":
            continue
        for field_name in option.fields:
            values[field_name] = (not value) if option.setting.negate else value
    return TrainConfig(preset=preset, **values)


def option_args(options: Mapping[str, Any]) -> list[str]:
    """The command-line arguments for option values (``None`` left out: the trainer's preset decides)."""
    args: list[str] = []
    for name, value in options.items():
        option = OPTIONS[name]  # a KeyError here is a settings field with no option: a programming error
        if value is None or (option.setting.negate and not value):
            continue
        if option.setting.negate:
            args.append(option.flag)
        elif isinstance(value, tuple):
            args += [option.flag, "/".join(str(v) for v in value)]
        else:
            args += [option.flag, str(value)]
    return args
