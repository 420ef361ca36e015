"""The model card (``model_card.json``) as one typed object: what every reader of a card goes through.

A card is written by the trainer (``lggdemo.train.publish``) and read by the job manager, the Train page,
cross-validation, evaluation and the trainer itself (copying a model, continuing a U-Net). Writing and reading it
through one type means one place knows where each number lives -- per-model metrics are under
``card["segmentation"]["metrics"]``, never at the top level -- which numbers are held-out claims a copied model
loses (:meth:`ModelSection.copied`), and one place tolerates older cards. The sections are built with
:meth:`ModelSection.trained`, :meth:`ModelSection.updated` and :meth:`ModelSection.withheld`, the card with
:meth:`ModelCard.with_model`; nothing else edits a card's dicts.

``schema_version`` counts incompatible changes of the layout; cards written before it existed (the
bundled ``weights/model_card.json`` among them) are version 1. Unknown keys are kept: :meth:`ModelCard.to_dict`
gives back exactly what was read, plus what was changed. Imports no torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lggdemo.models import MODELS

#: The layout this code writes and reads. Cards without the key predate it and have the same layout.
SCHEMA_VERSION = 1
#: A section's numbers measured on its own run's validation patients: not a claim about another split's patients.
HELD_OUT_KEYS: tuple[str, ...] = ("metrics", "per_patient_dice", "per_patient_p_g3", "per_patient_logit",
                                  "per_patient_age_p_g3", "labels", "validation_masks", "tumour_slice_dice_by_area")
#: Estimates recorded for one folder's pair of models (``lggdemo-crossval --grade --record-in``): a model copied
#: beside another U-Net is not that pair, so a copy drops them.
PAIR_KEYS: tuple[str, ...] = ("out_of_fold", "calibration")
#: What ``held_out_metrics`` says of a model copied from a run on another patient split.
WITHHELD_OTHER_SPLIT = "withheld: copied from a model trained on another patient split"


class CardError(ValueError):
    """A card that is not a JSON object or is newer than this code understands."""


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, Mapping):
        value = value.get("value")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class ModelSection:
    """One model's part of a card (``segmentation`` or ``grade``)."""

    data: dict[str, Any] = field(default_factory=dict)

    # --- writing: each returns a new section ---------------------------------------------------------------------

    @classmethod
    def trained(cls, config: Mapping[str, Any], **fields: Any) -> ModelSection:
        """A model trained in this run: its network ``config`` and what the trainer measured (``fields``)."""
        return cls({"config": dict(config), "trained_in_this_run": True, **fields})

    def updated(self, fields: Mapping[str, Any] | None = None, **more: Any) -> ModelSection:
        """This section with ``fields`` (and ``more``) added or replaced."""
        return ModelSection({**self.data, **dict(fields or {}), **more})

    def withheld(self, reason: str) -> ModelSection:
        """No held-out numbers, and why (``held_out_metrics``; :attr:`held_out` reads it)."""
        return ModelSection({k: v for k, v in self.data.items() if k not in HELD_OUT_KEYS}
                            | {"held_out_metrics": reason})

    def copied(self, folder: str, *, same_split: bool, fields: Mapping[str, Any] | None = None) -> ModelSection:
        """This model as a copy into another run's folder (``folder``: where it came from), with that run's
        ``fields`` over it. It keeps its held-out numbers only when the new run has its patient split and it had
        some (``same_split``); it never keeps the estimates recorded for its old pair of models."""
        data = {**self.data, **dict(fields or {}), "trained_in_this_run": False, "copied_from": folder}
        section = ModelSection({k: v for k, v in data.items() if k not in PAIR_KEYS})
        return section if same_split and self.held_out else section.withheld(WITHHELD_OTHER_SPLIT)

    # --- reading ---------------------------------------------------------------------------------------------------

    @property
    def metrics(self) -> dict[str, dict[str, Any]]:
        """Held-out metrics by name (``{"value", "ci", "n", "definition"}`` each); empty when withheld."""
        return {k: dict(v) for k, v in _dict(self.data.get("metrics")).items() if isinstance(v, Mapping)}

    def metric(self, name: str) -> float | None:
        return _number(self.metrics.get(name))

    def metric_values(self) -> dict[str, float]:
        """``{"per_volume_dice_mean": 0.82, ...}``: the numbers alone."""
        return {k: v for k, v in ((k, _number(m)) for k, m in self.metrics.items()) if v is not None}

    @property
    def config(self) -> dict[str, Any]:
        return _dict(self.data.get("config"))

    @property
    def trained_in_this_run(self) -> bool:
        return bool(self.data.get("trained_in_this_run"))

    @property
    def held_out(self) -> bool:
        """False when its numbers were withheld (a model copied from another patient split)."""
        return "held_out_metrics" not in self.data

    @property
    def per_patient_dice(self) -> dict[str, float]:
        return {str(k): float(v) for k, v in _dict(self.data.get("per_patient_dice")).items()
                if isinstance(v, (int, float))}

    @property
    def training_seconds(self) -> float | None:
        return _number(self.data.get("training_seconds"))

    @property
    def initialised_from(self) -> dict[str, Any] | None:
        parent = self.data.get("initialised_from")
        return dict(parent) if isinstance(parent, Mapping) else None

    @property
    def cross_validation(self) -> dict[str, Any]:
        return _dict(self.data.get("cross_validation"))

    @property
    def out_of_fold(self) -> dict[str, Any]:
        """The grade's pooled out-of-fold estimate (``lggdemo-crossval --grade``); empty when not recorded."""
        return _dict(self.data.get("out_of_fold"))

    @property
    def cross_validation_metrics(self) -> dict[str, dict[str, Any]]:
        """The recipe's k-fold estimate (``lggdemo-crossval``), by metric name."""
        return {k: dict(v) for k, v in _dict(self.cross_validation.get("metrics")).items() if isinstance(v, Mapping)}

    @property
    def cross_validated_dice(self) -> dict[str, float]:
        """Each patient's per-volume Dice from the recipe's k-fold estimate, scored by the fold model that never saw it."""
        folds = self.cross_validation.get("folds")
        return {str(k): float(v) for f in (folds if isinstance(folds, list) else []) if isinstance(f, Mapping)
                for k, v in _dict(f.get("per_patient_dice")).items() if isinstance(v, (int, float))}


@dataclass(frozen=True)
class SplitRecord:
    """Which patients trained and which validated the card's models."""

    seed: int | None = None
    train: tuple[str, ...] = ()
    val: tuple[str, ...] = ()
    fold: int | None = None
    folds: int | None = None
    method: str | None = None

    @classmethod
    def from_dict(cls, value: Any) -> SplitRecord:
        d = _dict(value)
        ints = {k: d.get(k) if isinstance(d.get(k), int) else None for k in ("seed", "fold", "folds")}
        return cls(train=tuple(str(p) for p in d.get("train") or ()), val=tuple(str(p) for p in d.get("val") or ()),
                   method=d.get("method") if isinstance(d.get("method"), str) else None, **ints)

    def same_patients(self, train: tuple[str, ...] | list[str], val: tuple[str, ...] | list[str]) -> bool:
        return list(self.train) == list(train) and list(self.val) == list(val)


@dataclass(frozen=True)
class ModelCard:
    """A weights folder's card. Build with :meth:`from_dict` (tolerant) and write with ``weights.write_card``."""

    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, value: Any) -> ModelCard:
        if not isinstance(value, Mapping):
            raise CardError(f"a model card is a JSON object, not {type(value).__name__}")
        card = cls(dict(value))
        if card.schema_version > SCHEMA_VERSION:
            raise CardError(f"model card schema {card.schema_version} is newer than this app reads ({SCHEMA_VERSION})")
        return card

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON data, with ``schema_version`` (what :func:`lggdemo.models.weights.write_card` writes)."""
        return {"schema_version": self.schema_version, **{k: v for k, v in self.data.items() if k != "schema_version"}}

    def with_model(self, key: str, section: ModelSection) -> ModelCard:
        """This card with ``section`` as model ``key`` (one of ``lggdemo.models.MODELS``)."""
        if key not in MODELS:
            raise CardError(f"a card has sections {', '.join(MODELS)}, not {key!r}")
        return ModelCard({**self.data, key: dict(section.data)})

    @property
    def schema_version(self) -> int:
        v = self.data.get("schema_version")
        return v if isinstance(v, int) and not isinstance(v, bool) else 1

    @property
    def version(self) -> str | None:
        v = self.data.get("version")
        return str(v) if v is not None else None

    @property
    def device(self) -> str | None:
        v = self.data.get("device")
        return str(v) if v is not None else None

    @property
    def distributed(self) -> dict[str, Any]:
        """The processes that trained (``world_size``, ``backend``, ``per_rank_batch_size``...); empty on older cards."""
        return _dict(self.data.get("distributed"))

    @property
    def world_size(self) -> int:
        """1 for a plain run and for cards written before torchrun training existed."""
        v = self.distributed.get("world_size")
        return v if isinstance(v, int) and not isinstance(v, bool) and v >= 1 else 1

    @property
    def train_config(self) -> dict[str, Any]:
        return _dict(self.data.get("train_config"))

    @property
    def split(self) -> SplitRecord:
        return SplitRecord.from_dict(self.data.get("split"))

    def file_sha256(self, name: str) -> str | None:
        entry = _dict(self.data.get("files")).get(name)
        sha = entry.get("sha256") if isinstance(entry, Mapping) else None
        return sha if isinstance(sha, str) else None

    def file_entry(self, name: str) -> dict[str, Any] | None:
        entry = _dict(self.data.get("files")).get(name)
        return dict(entry) if isinstance(entry, Mapping) else None

    def has_model(self, key: str) -> bool:
        return isinstance(self.data.get(key), Mapping)

    def model(self, key: str) -> ModelSection:
        """``"segmentation"`` or ``"grade"``; an empty section when the card has none."""
        return ModelSection(_dict(self.data.get(key)))

    @property
    def segmentation(self) -> ModelSection:
        return self.model("segmentation")

    @property
    def grade(self) -> ModelSection:
        return self.model("grade")

    def metrics(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Held-out metrics per model: ``{"segmentation": {"per_volume_dice_mean": {...}}, "grade": {...}}``."""
        return {k: self.model(k).metrics for k in MODELS if self.model(k).metrics}

    def metric_values(self) -> dict[str, dict[str, float]]:
        return {k: self.model(k).metric_values() for k in MODELS if self.model(k).metric_values()}


@dataclass(frozen=True)
class CardMetric:
    value: float
    ci95: tuple[float, float] | None
    n: int | None
    definition: str

    def text(self, digits: int = 2) -> str:
        ci = f" (95% CI {self.ci95[0]:.{digits}f}–{self.ci95[1]:.{digits}f})" if self.ci95 else ""
        n = f", n = {self.n}" if self.n else ""
        return f"{self.value:.{digits}f}{ci}{n}"


def card_metric(card: ModelCard | dict[str, Any] | None, section: str, name: str, *,
                cross_validated: bool = False, out_of_fold: str | None = None) -> CardMetric | None:
    """A metric from a model card, or None when it is missing or malformed (cards come from many runs).

    ``cross_validated`` reads the recipe's k-fold estimate (``lggdemo-crossval``) instead of
    the model's own validation patients: more patients behind it, but a statement about the recipe.
    ``out_of_fold`` reads the grade's pooled out-of-fold estimate of one predictor (``"model"``,
    ``"age_only"``, ``"calibrated_cross_fitted"``; ``lggdemo-crossval --grade``).
    """
    try:
        model = (card if isinstance(card, ModelCard) else ModelCard.from_dict(card or {})).model(section)
    except CardError:
        return None
    if out_of_fold is not None:
        entry = _dict(model.out_of_fold.get(out_of_fold)).get(name)
    else:
        entry = model.cross_validation_metrics.get(name) if cross_validated else model.metrics.get(name)
    if not isinstance(entry, Mapping):
        return None
    try:
        value = float(entry["value"])
        if not math.isfinite(value):
            return None
        ci = entry.get("ci95")
        ci95 = (float(ci[0]), float(ci[1])) if isinstance(ci, (list, tuple)) and len(ci) == 2 else None
        n = entry.get("n")
        count = int(n) if isinstance(n, (int, float)) else None
        return CardMetric(value, ci95, count, str(entry.get("definition", "")))
    except (KeyError, TypeError, ValueError, IndexError):
        return None
