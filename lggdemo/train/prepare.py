"""What a run sets up before any model trains: the device, the dataset and its split, the decoded slices.

Every slice is decoded and normalised once per run (uint8 arrays cached on disk by dataset version),
because on a 2-core CPU the data pipeline would otherwise cost as much as the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lggdemo.data.arrays import SliceArrays, slice_arrays
from lggdemo.data.kaggle import DatasetError, DatasetIndex, scan_dataset
from lggdemo.data.sources import choose_dataset
from lggdemo.device import DeviceError, choose_device, default_threads
from lggdemo.train import distributed
from lggdemo.train.config import TrainConfig, TrainError
from lggdemo.train.finetune_data import CorrectionSet, inherited_split
from lggdemo.train.split import Split, fold_split, patient_split


@dataclass
class Prepared:
    """Everything decoded once per run."""

    index: DatasetIndex
    split: Split
    arrays_256: SliceArrays
    device: torch.device
    history: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {"segmentation": [], "grade": []})
    corrections: CorrectionSet | None = None  # --corrections: corrected slices the U-Net also trains on

    def scored_split(self) -> Split:
        """The split with the validation patients every number is measured on: the split's own, less any a
        correction was cut from (its slice was trained on). The card keeps the split itself."""
        held = set(self.corrections.held_back) if self.corrections is not None else set()
        return Split(self.split.train, tuple(p for p in self.split.val if p not in held), self.split.seed)

    def validation_selection(self) -> np.ndarray:
        """Boolean per slice of ``arrays_256``: the slices of :meth:`scored_split`'s validation patients."""
        return np.isin(self.arrays_256.patient_ids, self.scored_split().val)


def training_device(cfg: TrainConfig) -> torch.device:
    """The device ``cfg.device`` names (a missing one is a :class:`TrainError`), with the CPU thread count set.

    Under torchrun this rank joins the process group and takes its own GPU or its share of the cores.
    """
    try:
        device = choose_device(cfg.device)
    except DeviceError as exc:
        raise TrainError(str(exc)) from exc
    torch.set_num_threads(cfg.threads or default_threads())
    return distributed.join(device, cfg.threads)


def load_index(cfg: TrainConfig) -> DatasetIndex:
    """Scan ``cfg.data`` (default: the app's active dataset, recorded back into ``cfg``)."""
    if cfg.data is None:

        cfg.data = str(choose_dataset().root)
    try:
        return scan_dataset(cfg.data)
    except DatasetError as exc:
        raise TrainError(str(exc)) from exc


def choose_split(cfg: TrainConfig, index: DatasetIndex) -> Split:
    """One fold of a k-fold partition (``cfg.fold``), else the seeded held-out fraction.

    A corrections fine-tune keeps its parent's split instead (see :mod:`lggdemo.train.finetune_data`).
    """
    if cfg.corrections and cfg.init_from:
        inherited = inherited_split(cfg, index)
        if inherited is not None:
            return inherited
    return fold_split(index, *cfg.fold, cfg.seed) if cfg.fold else patient_split(index, cfg.val_fraction, cfg.seed)


def prepare(index: DatasetIndex, split: Split, device: torch.device) -> Prepared:
    """Decode every slice at 256² once (the validation metrics and the grade crops read these)."""
    return Prepared(index, split, slice_arrays(index, 256), device)
