"""Publishing a run: the weights folder, its files and its model card (what was trained, on what, measured how).

Nothing is written to ``--out`` until training has finished; then each file is written to a
temporary name and renamed, the card last, with SIGTERM/SIGINT held meanwhile. A run stopped
between steps or killed outright leaves the previous weights byte-identical. The card is assembled as a
:class:`lggdemo.models.card.ModelCard` from the run's :class:`~lggdemo.models.card.ModelSection` s: the type every
reader of a card goes through.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import platform
import shutil
import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

import lggdemo
from lggdemo.data.kaggle import DatasetIndex
from lggdemo.device import cpu_info, describe
from lggdemo.metrics.definitions import DEFINITIONS
from lggdemo.models import MODELS
from lggdemo.models.card import ModelCard, ModelSection
from lggdemo.models.engine.export import DERIVED_FILES_NOTE
from lggdemo.models.networks import GradeConfig, GradeNet, SegConfig
from lggdemo.models.weights import GRADE_FILE, SEG_FILE, WeightsError, load_card, save_model, write_card
from lggdemo.train.config import TrainConfig
from lggdemo.train.distributed import card_entry
from lggdemo.train.loop import channels_last, resolve_precision
from lggdemo.train.split import Split, same_split


def data_fingerprint(index: DatasetIndex) -> dict[str, Any]:
    """Per-patient SHA-256 over its files: enough to tell whether a card's data is the data at hand."""
    per: dict[str, str] = {}
    for pid, slices in index.patients.items():
        h = hashlib.sha256()
        for rec in slices:
            for p in (rec.image_path, rec.mask_path):
                h.update(p.name.encode())
                h.update(p.read_bytes())
        per[pid] = h.hexdigest()
    csv = index.root / "data.csv"
    return {"n_patients": len(per), "n_slices": index.n_slices, "patient_sha256": per,
            "data_csv_sha256": hashlib.sha256(csv.read_bytes()).hexdigest() if csv.is_file() else None}


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("torch", "torchvision", "segmentation-models-pytorch", "timm", "numpy", "safetensors"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


#: The precision rule, written in every card beside the precision a run used (and in weights/README.md).
PRECISION_NOTE = ("auto trains in bf16 (channels-last) on CUDA and on a CPU with native bf16, in fp32 elsewhere. An fp32 "
                  "run of a recipe cross-validated in bf16 may carry that estimate, labelled as estimated with bf16 "
                  "fold models (same data, epochs, schedule and loss; autocast changes only the rounding of the "
                  "convolutions; the difference was not measured here).")


def precision_entry(cfg: TrainConfig, device: torch.device) -> dict[str, Any]:
    """The card's ``precision`` (asked, used) and ``cpu`` (model, capability, native bf16): what the speed and the
    numerics of the run depended on. ``used`` is what recipes compare (``lggdemo.evaluation.crossval``)."""
    return {"precision": {"requested": cfg.precision, "used": resolve_precision(device, cfg.precision),
                          "channels_last": channels_last(device, cfg.precision), "note": PRECISION_NOTE},
            "cpu": cpu_info().to_dict()}


def publish(cfg: TrainConfig, out: Path, source: Path, sections: Mapping[str, ModelSection], index: DatasetIndex,
            split: Split, device: torch.device, seg_model: torch.nn.Module | None, seg_cfg: SegConfig | None,
            grade_model: GradeNet | None, grade_cfg: GradeConfig | None, seconds: float) -> ModelCard:
    """Write the weights folder ``out``: the models trained here (those with a section and a model), a copy of each
    other model ``source`` holds (its section through :meth:`ModelSection.copied`), then the card. Returns the card."""
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {}
    sections = dict(sections)
    try:
        old_card = load_card(source)
    except WeightsError:
        old_card = ModelCard()
    for name, model, mcfg, key in ((SEG_FILE, seg_model, seg_cfg, "segmentation"), (GRADE_FILE, grade_model, grade_cfg, "grade")):
        if key in sections and model is not None and mcfg is not None:
            files[name] = {"sha256": save_model(out / name, model, mcfg), "dtype": "float16"}
        elif (source / name).is_file() and old_card.has_model(key):
            if source.resolve() != out.resolve():
                tmp = out / f".{name}.copy"
                shutil.copyfile(source / name, tmp)
                os.replace(tmp, out / name)
            files[name] = old_card.file_entry(name)
            new = sections.get(key)
            sections[key] = old_card.model(key).copied(str(source), same_split=same_split(old_card, split),
                                                       fields=new.data if new is not None else None)
    created = dt.datetime.now(dt.timezone.utc)
    card = ModelCard({
        "version": created.strftime("%Y%m%dT%H%M%SZ") + f"-{cfg.preset}-s{cfg.seed}",
        "created": created.isoformat(timespec="seconds"),
        "intended_use": lggdemo.NOT_FOR_DIAGNOSIS,
        "trainer": "python -m lggdemo.train",
        "train_config": dataclasses.asdict(cfg),
        "input": {"slice": "256×256 RGB uint8: R pre-contrast, G FLAIR, B post-contrast",
                  "normalisation": "per slice and channel: z-score over head pixels (any channel > 10), clipped to ±6; "
                                   "bilinear resize to the model's input size",
                  "grade_input": "tumour crop (mask bounding box + 25% margin, square) of the 256² normalised slice, "
                                 "resized to the grade model's input size, plus age (standardised), sex and "
                                 "missing-value indicators"},
        "storage": "safetensors, float16; upcast to float32 when loaded",
        "derived_files": DERIVED_FILES_NOTE,
        "files": files,
        "data": {"root": str(index.root), **data_fingerprint(index)},
        "split": {**({"method": "patient-level, stratified by grade", "val_fraction": cfg.val_fraction} if not cfg.fold
                     else {"method": "patient-level k-fold, stratified by grade; one fold held out",
                           "fold": cfg.fold[0], "folds": cfg.fold[1]}),
                  "seed": split.seed, "train": list(split.train), "val": list(split.val)},
        **{k: dict(sections[k].data) for k in MODELS if k in sections},
        "metric_definitions": DEFINITIONS,
        "device": describe(device),
        **precision_entry(cfg, device),
        "distributed": card_entry(cfg),
        "library_versions": library_versions(),
        "training_seconds": seconds,
    })
    write_card(out, card)
    return card


class signals_deferred:
    """Hold SIGTERM/SIGINT while the weights are published, then deliver them."""

    def __enter__(self) -> None:
        self._pending: list[int] = []
        self._old: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, lambda s, f: self._pending.append(s))

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        for sig in self._pending:
            os.kill(os.getpid(), sig)
