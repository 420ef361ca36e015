""""Try an example": a few slices of a real patient, and whether the active weights trained on that patient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lggdemo.data.imageio import SLICE_SIZE, UploadBatch, UploadedSlice, resize_image, resize_mask
from lggdemo.data.kaggle import Clinical, DatasetIndex, load_image, load_mask
from lggdemo.inference.predictor import InputError
from lggdemo.models.card import CardError, ModelCard, SplitRecord

SEEN_VALIDATION = "validation patient"


SEEN_TRAINING = "training patient — these numbers look better than on new patients"


SEEN_NEITHER = "not seen in training"


def dice_scope(seen: str) -> str:
    """Whom a Dice was measured on, as the end of "Dice on ...": "a validation patient", "a patient not seen in
    training" (the labels read as an example's description, not all as a noun)."""
    return f"a patient {seen}" if seen == SEEN_NEITHER else f"a {seen}"


def _card(card: ModelCard | dict[str, Any] | None) -> ModelCard:
    try:
        return card if isinstance(card, ModelCard) else ModelCard.from_dict(card or {})
    except CardError:
        return ModelCard.from_dict({})


def _split(card: ModelCard | dict[str, Any] | None) -> SplitRecord:
    return _card(card).split


def seen_label(card: ModelCard | dict[str, Any] | None, patient_id: str) -> str:
    """Whether the weights of ``card`` trained on this patient, in the words shown beside its numbers.

    A Dice or P(G3) on a training patient flatters the model; on a validation patient it is what the card
    reports; anyone else (a phantom, a patient added later) was never seen. Weights trained on every patient
    (the bundled ones) leave no validation patient, so a training patient also gets what the recipe's
    cross-validation scored on it, by a fold model that never saw it: the number to expect on a new patient.
    """
    split = _split(card)
    if patient_id in split.val:
        return SEEN_VALIDATION
    if patient_id in split.train:
        unseen = _card(card).segmentation.cross_validated_dice.get(patient_id)
        return SEEN_TRAINING + (f"; a model of the same recipe that never saw this patient scored per-volume Dice "
                                f"{unseen:.2f}" if unseen is not None else "")
    return SEEN_NEITHER


def seen_label_for_name(card: ModelCard | dict[str, Any] | None, name: str) -> str | None:
    """:func:`seen_label` for an upload whose file or folder name carries a split patient's ID, else None
    (an unnamed upload may be anyone, so nothing is claimed)."""
    split = _split(card)
    pid = next((p for p in (*split.val, *split.train) if p and p in name), None)
    return None if pid is None else seen_label(card, pid)


def example_patients(index: DatasetIndex, card: ModelCard | dict[str, Any] | None) -> list[str]:
    """The patients "Try an example" cycles through: the weights' validation patients when the dataset has any
    (their numbers are the card's), otherwise every patient."""
    val = set(_split(card).val)
    preferred = [p for p in index.patient_ids if p in val]
    return preferred or list(index.patient_ids)


@dataclass(frozen=True)
class ExampleCase:
    patient_id: str
    batch: UploadBatch
    clinical: Clinical  # age and sex as recorded (grade included, for display only)
    seen: str = SEEN_NEITHER  # seen_label: validation, training or never seen


def example_case(index: DatasetIndex, which: int = 0, n_slices: int = 4,
                 card: ModelCard | dict[str, Any] | None = None) -> ExampleCase:
    """A few tumour-bearing slices of one patient, with ground truth and clinical fields, as an upload would be.

    ``which`` cycles through :func:`example_patients` (the active weights' validation patients first) so that
    pressing the button again shows another one. Slices are spread evenly over the tumour's extent, so the
    strip shows the tumour growing and shrinking.
    """
    pids = example_patients(index, card)
    if not pids:
        raise InputError("The dataset has no patients.")
    pid = pids[which % len(pids)]
    records = index.patients[pid]
    masks = [load_mask(r) for r in records]
    tumour = [i for i, m in enumerate(masks) if m.any()] or list(range(len(records)))
    picks = sorted({tumour[int(round(k))] for k in np.linspace(0, len(tumour) - 1, min(n_slices, len(tumour)))})
    slices = []
    for i in picks:
        image = load_image(records[i])
        slices.append(UploadedSlice(records[i].image_path.name, resize_image(image, SLICE_SIZE),
                                    (int(image.shape[0]), int(image.shape[1])), (), resize_mask(masks[i], SLICE_SIZE)))
    return ExampleCase(pid, UploadBatch(tuple(slices)), index.clinical_for(pid), seen_label(card, pid))
