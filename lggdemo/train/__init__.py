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

# The package's modules, one job each:
#   config        TrainConfig, presets, checks (torch-free)      events      the trainer<->job contract (torch-free)
#   progress      event fan-out: JSON lines, terminal bar        split       patients into train/val, k folds
#   prepare       device, dataset, split, decoded slices         augmentation  batch augmentation
#   loop          the optimisation loop and its seams            segmentation  the U-Net's training
#   grade         the grade model's data, fit and CV             publish     the weights folder and its card
#   pipeline      one run end to end (``run``)                   benchmark   training throughput
#   cli           ``python -m lggdemo.train``                    distributed torchrun + DDP (process group, shards)
#   finetune_data the corrections a fine-tune trains on          finetune_report  its before/after comparison
#   scoring       the engine the trainer scores with             estimate    a run's time, before it starts
#
# Names are re-exported lazily (PEP 562): ``from lggdemo.train import TrainConfig`` must not import
# torch, because the job manager and the sidebar read the config and the contract without it.

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("PRESETS", "TASKS", "TrainConfig", "TrainError"), "config"),
    **dict.fromkeys(("Cancelled", "Event", "JsonlWriter", "Progress", "ProgressCallback", "TqdmReporter"), "progress"),
    **dict.fromkeys(("Split", "fold_split", "kfold", "patient_split", "same_split"), "split"),
    **dict.fromkeys(("augment",), "augmentation"),
    **dict.fromkeys(("Prepared",), "prepare"),
    **dict.fromkeys(("continue_from", "slice_dice_loss", "train_segmentation"), "segmentation"),
    **dict.fromkeys(("GradeData", "fit_grade", "grade_data", "train_grade"), "grade"),
    **dict.fromkeys(("data_fingerprint", "library_versions"), "publish"),
    **dict.fromkeys(("run",), "pipeline"),
    **dict.fromkeys(("benchmark_distributed", "benchmark_training"), "benchmark"),
    **dict.fromkeys(("build_parser", "config_from_args", "main"), "cli"),
}
__all__ = [
    "Cancelled", "Event", "GradeData", "JsonlWriter", "PRESETS", "Prepared", "Progress", "ProgressCallback", "Split",
    "TASKS", "TqdmReporter", "TrainConfig", "TrainError", "augment", "benchmark_distributed", "benchmark_training",
    "build_parser", "config_from_args", "continue_from", "data_fingerprint", "fit_grade", "fold_split", "grade_data", "kfold",
    "library_versions", "main", "patient_split", "run", "same_split", "slice_dice_loss", "train_grade",
    "train_segmentation",
]

if TYPE_CHECKING:
    from lggdemo.train.augmentation import augment
    from lggdemo.train.benchmark import benchmark_distributed, benchmark_training
    from lggdemo.train.cli import build_parser, config_from_args, main
    from lggdemo.train.config import PRESETS, TASKS, TrainConfig, TrainError
    from lggdemo.train.grade import GradeData, fit_grade, grade_data, train_grade
    from lggdemo.train.pipeline import run
    from lggdemo.train.prepare import Prepared
    from lggdemo.train.progress import Cancelled, Event, JsonlWriter, Progress, ProgressCallback, TqdmReporter
    from lggdemo.train.publish import data_fingerprint, library_versions
    from lggdemo.train.segmentation import continue_from, slice_dice_loss, train_segmentation
    from lggdemo.train.split import Split, fold_split, kfold, patient_split, same_split


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
