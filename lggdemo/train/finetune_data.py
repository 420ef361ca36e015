"""Fine-tuning on corrected masks (``--corrections DIR --init-from WEIGHTS``): the data side.

A person's corrections (:mod:`lggdemo.corrections`, a kaggle_3m folder) join the U-Net's training data,
each drawn ``--corrections-weight`` times as often as a tumour slice of the dataset; a corrected slice of a
training patient replaces that slice's original mask. They never enter validation, and neither does a
validation patient one of them was cut from: its slice was trained on, so scoring it would flatter the
run. Those patients are left out of every validation number of the run (the card names them).

The run keeps its parent's patient split (read from ``--init-from``'s card), so the validation patients
are exactly the parent's and the before/after comparison (:mod:`lggdemo.train.finetune_report`) is fair even
when the dataset has grown since the parent was trained. A parent trained on every patient (the bundled
weights) has none: its fine-tune trains on the same patients, and only the corrected slices are compared.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lggdemo.corrections import list_corrections
from lggdemo.data.arrays import SliceArrays, slice_arrays
from lggdemo.data.kaggle import DatasetError, DatasetIndex, scan_dataset
from lggdemo.models.card import CardError, ModelCard
from lggdemo.train.config import TrainConfig, TrainError
from lggdemo.train.split import Split


@dataclass(frozen=True)
class CorrectionSet:
    """The corrected slices one run fine-tunes on, in the order of ``index.slices()``."""

    index: DatasetIndex  # the corrections folder, read like any kaggle_3m folder
    ids: tuple[str, ...]  # "<patient>_<n>" per slice
    source_slices: tuple[int | None, ...]  # the slice each one corrects in its source patient, when known
    weight: int
    held_back: tuple[str, ...] = ()  # validation patients with a correction: left out of the validation numbers
    problems: tuple[str, ...] = field(default=())

    @property
    def patient_ids(self) -> np.ndarray:
        return np.array([r.patient_id for r in self.index.slices()])

    def arrays(self, size: int) -> SliceArrays:
        return slice_arrays(self.index, size)

    def replaced(self, patient_ids: np.ndarray, numbers: np.ndarray) -> np.ndarray:
        """Boolean per dataset slice: True where a correction of that very slice stands in for it."""
        corrected = {(p, n) for p, n in zip(self.patient_ids, self.source_slices) if n is not None}
        return np.array([(p, int(n)) in corrected for p, n in zip(patient_ids, numbers)], dtype=bool)

    def card_entry(self) -> dict[str, object]:
        return {"folder": str(self.index.root), "slices": len(self.ids), "ids": list(self.ids), "weight": self.weight,
                "patients": sorted(set(self.patient_ids.tolist())),
                "validation_patients_left_out": list(self.held_back),
                "rule": "corrected slices are drawn `weight` times as often as a tumour slice; a correction of a "
                        "training slice replaces its mask; validation patients with a correction are left out of "
                        "every validation number"}


def read_corrections(folder: str | Path) -> DatasetIndex:
    """The corrections folder as a dataset index; :class:`TrainError` when it holds no usable slice."""
    try:
        return scan_dataset(folder)
    except DatasetError as exc:
        raise TrainError(f"--corrections {folder}: no corrected slices to fine-tune on ({exc}).") from exc


def load_corrections(cfg: TrainConfig, split: Split) -> CorrectionSet:
    """The corrections ``cfg`` names, with which validation patients they hold back."""
    index = read_corrections(str(cfg.corrections))
    by_id = {c.id: c for c in list_corrections(index.root)}
    ids = tuple(r.image_path.stem for r in index.slices())
    sources = tuple((by_id[i].provenance.source_slice if i in by_id and by_id[i].provenance else None) for i in ids)
    held = tuple(sorted(set(index.patient_ids) & set(split.val)))
    return CorrectionSet(index, ids, sources, int(cfg.corrections_weight), held,
                         tuple(str(p) for p in index.problems))


def inherited_split(cfg: TrainConfig, index: DatasetIndex) -> Split | None:
    """The parent's split for a corrections fine-tune, or ``None`` when its card records no training patients.

    A parent trained on every patient keeps its empty validation set: any patient held out now was trained on.

    :class:`TrainError` when the card names patients this dataset lacks (another dataset).
    """
    card_path = Path(str(cfg.init_from)) / "model_card.json"
    try:
        card = ModelCard.from_dict(json.loads(card_path.read_text()))
    except (OSError, ValueError, CardError):
        return None
    split = card.split
    if not split.train:
        return None
    missing = sorted((set(split.train) | set(split.val)) - set(index.patient_ids))
    if missing:
        raise TrainError(f"--init-from {cfg.init_from} was trained on patients this dataset lacks "
                         f"({', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}): fine-tune it on its own dataset.")
    return Split(tuple(split.train), tuple(split.val), int(split.seed or 0))


def fine_tune_problems(cfg: TrainConfig, index: DatasetIndex | None) -> list[str]:
    """Why a corrections fine-tune cannot run on ``index``, in words (empty when it can): checked before launching."""
    if not cfg.corrections:
        return []
    problems: list[str] = []
    try:
        read_corrections(str(cfg.corrections))
    except TrainError as exc:
        problems.append(str(exc))
    if cfg.init_from and index is not None:
        try:
            if inherited_split(cfg, index) is None:
                problems.append(f"The weights in {cfg.init_from} record no patient split, so their validation "
                                "patients are unknown: fine-tune weights trained by this app's trainer.")
        except TrainError as exc:
            problems.append(str(exc))
    return problems
