"""Patients into training and validation sets: never slices, always stratified by grade, fixed by a seed.

The slices of one patient are strongly correlated, so a slice-level split would report inflated numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lggdemo.data.kaggle import DatasetIndex
from lggdemo.models.card import ModelCard
from lggdemo.train.config import TrainError


@dataclass(frozen=True)
class Split:
    train: tuple[str, ...]
    val: tuple[str, ...]
    seed: int


def patient_split(index: DatasetIndex, val_fraction: float, seed: int) -> Split:
    """Patients (never slices) into train/val, stratified by grade (unknown grade is its own stratum).

    ``val_fraction`` 0 trains on every patient (no validation patients): for weights whose estimate is the
    cross-validation of their recipe rather than one split.
    """
    if val_fraction == 0 and index.patient_ids:
        return Split(tuple(sorted(index.patient_ids)), (), seed)
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


def same_split(card: ModelCard, split: Split) -> bool:
    """Whether a card's models were trained on exactly this split's training patients."""
    return card.split.same_patients(split.train, split.val)
