"""One training run end to end: prepare, train what the task asks for, measure, publish.

:func:`run` is the steps, in order; each step is a function below it. The card's model sections are built as
:class:`lggdemo.models.card.ModelSection` s and written by :func:`lggdemo.train.publish.publish`.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lggdemo.data.arrays import SliceArrays
from lggdemo.data.kaggle import DatasetIndex
from lggdemo.device import describe
from lggdemo.evaluation.scoring import SegmentationScore, score_segmentation
from lggdemo.models import MODELS
from lggdemo.models.card import ModelSection
from lggdemo.models.engine import Engine
from lggdemo.models.networks import GradeConfig, GradeNet, SegConfig
from lggdemo.models.postprocess import patient_rule_text
from lggdemo.models.weights import CARD_FILE, WeightsError, active_dir, load_card, load_grade, load_segmentation
from lggdemo.train.config import TrainConfig
from lggdemo.train.distributed import is_main
from lggdemo.train.events import DONE, INFO, START, TASK_MODELS
from lggdemo.train.finetune_data import load_corrections
from lggdemo.train.finetune_report import fine_tune_report
from lggdemo.train.grade import grade_validation, train_grade
from lggdemo.train.loop import precision_warning
from lggdemo.train.prepare import Prepared, choose_split, load_index, prepare, training_device
from lggdemo.train.progress import Progress, ProgressCallback
from lggdemo.train.publish import publish, signals_deferred
from lggdemo.train.scoring import scoring_engine
from lggdemo.train.segmentation import train_unet
from lggdemo.train.split import Split, same_split

#: What a card says in place of held-out numbers when the run trained on every patient (the bundled preset).
NO_VALIDATION = ("none: trained on every patient given; the cross-validation of the same recipe "
                 "(lggdemo-crossval --record-in) is its estimate")


_NONE = ModelSection()


@dataclass
class _Run:
    """What the steps of one run share."""

    cfg: TrainConfig
    progress: Progress
    device: torch.device
    index: DatasetIndex
    split: Split
    out: Path
    source: Path  # where models this run does not train come from
    prep: Prepared
    want_seg: bool
    want_grade: bool


@dataclass
class _Validation:
    """The validation patients the run's numbers are measured on, and the masks its U-Net draws on them."""

    arrays: SliceArrays
    scored: Split
    score: SegmentationScore | None  # None: no U-Net, or no validation patient
    seg_engine: Engine | None

    @property
    def masks(self) -> np.ndarray:
        """The masks the grade model is measured with: the U-Net's when it drew some, else the truth."""
        return self.score.masks if self.score is not None else self.arrays.masks


def run(cfg: TrainConfig, listeners: Sequence[ProgressCallback] = (), stop: threading.Event | None = None) -> Path:
    """Train what ``cfg.task`` asks for and publish a complete weights folder at ``cfg.out``: the steps, in order."""
    cfg.validate()
    progress = Progress(listeners, stop)
    started = time.monotonic()
    r = _start(cfg, progress)
    seg_model, seg_cfg, seg_info = _unet(r)
    if not is_main():  # under torchrun the other ranks train alongside rank 0; measuring and publishing are its
        if r.want_grade:
            train_grade(cfg, r.prep, progress, seg_model, seg_cfg)
        return r.out
    val = _validate(r, seg_model, seg_cfg)
    sections: dict[str, ModelSection] = {}
    if r.want_seg and seg_cfg is not None:
        sections["segmentation"] = _segmentation_section(r, val, seg_model, seg_cfg, seg_info)
    grade_model, grade_cfg, grade_section = _grade(r, val, seg_model, seg_cfg)
    if grade_section is not None:
        sections["grade"] = grade_section
    progress.check()  # publish: nothing has touched `out` until here
    with signals_deferred():
        publish(cfg, r.out, r.source, sections, r.index, r.split, r.device, seg_model, seg_cfg, grade_model, grade_cfg,
                time.monotonic() - started)
    progress.emit(DONE, out=str(r.out), seconds=time.monotonic() - started,
                  metrics={m: sections[m].data["metrics"] for m in MODELS if "metrics" in sections.get(m, _NONE).data})
    return r.out


def _start(cfg: TrainConfig, progress: Progress) -> _Run:
    """The device, the dataset, its split and its decoded slices (with the corrections of a fine-tune)."""
    device = training_device(cfg)
    index = load_index(cfg)
    split = choose_split(cfg, index)
    out = Path(cfg.out)
    source = Path(cfg.complete_from or cfg.init_from or (out if (out / CARD_FILE).is_file() else active_dir()))
    models = TASK_MODELS[cfg.task]
    progress.emit(START, task=cfg.task, preset=cfg.preset, device=str(device), device_name=describe(device),
                  models=list(models),
                  epochs={"segmentation": cfg.seg_epochs, "grade": cfg.grade_epochs},
                  patients={"train": len(split.train), "val": len(split.val)}, data=str(index.root))
    slow = precision_warning(device, cfg.precision)
    if slow:
        progress.emit(INFO, message=slow)
    prep = prepare(index, split, device)
    if cfg.corrections:
        prep.corrections = load_corrections(cfg, split)
        progress.emit(INFO, message=f"fine-tuning on {len(prep.corrections.ids)} corrected slice(s), each drawn "
                                    f"{cfg.corrections_weight}x as often as a tumour slice; validation patients left "
                                    f"out (corrected): {', '.join(prep.corrections.held_back) or 'none'}")
    return _Run(cfg, progress, device, index, split, out, source, prep, "segmentation" in models, "grade" in models)


def _unet(r: _Run) -> tuple[torch.nn.Module | None, SegConfig | None, dict[str, Any]]:
    """The U-Net the run trains, or the source's (grade validation then crops where it draws), or none."""
    if r.want_seg:
        return train_unet(r.cfg, r.prep, r.progress)
    try:
        model, config = load_segmentation(r.source, r.device)
        return model, config, {}
    except WeightsError:
        r.progress.emit(INFO, message=f"no segmentation model in {r.source}: grade validation uses true masks")
        return None, None, {}


def _validate(r: _Run, seg_model: torch.nn.Module | None, seg_cfg: SegConfig | None) -> _Validation:
    """The U-Net's masks on the scored validation patients: the app's masks (evaluation/scoring), on its engine."""
    sel = r.prep.validation_selection()
    a = r.prep.arrays_256
    arrays = SliceArrays(a.images[sel], a.masks[sel], a.patient_ids[sel], a.numbers[sel])
    score, engine = None, None
    if seg_model is not None and seg_cfg is not None and sel.any():
        engine = scoring_engine(r.device, r.progress, seg=seg_model, seg_size=seg_cfg.image_size)
        score = score_segmentation(engine, seg_cfg, arrays.images, arrays.masks, arrays.patient_ids)
    return _Validation(arrays, r.prep.scored_split(), score, engine)


def _segmentation_section(r: _Run, val: _Validation, seg_model: torch.nn.Module, seg_cfg: SegConfig,
                          seg_info: dict[str, Any]) -> ModelSection:
    section = ModelSection.trained(dataclasses.asdict(seg_cfg), **{
        "postprocess": patient_rule_text(seg_cfg.min_component_px), "history": r.prep.history["segmentation"],
        **seg_info})
    if val.score is not None:
        section = section.updated(val.score.card_entry())
    if r.prep.corrections is not None:
        engine = val.seg_engine or scoring_engine(r.device, r.progress, seg=seg_model, seg_size=seg_cfg.image_size)
        section = section.updated(fine_tune=fine_tune_report(Path(str(r.cfg.init_from)), engine, seg_cfg, r.prep,
                                                             val.score.masks if val.score is not None else None))
    if val.score is None:  # no validation patient was scored; a fine-tune's report says why
        why = section.data.get("fine_tune", {}).get("validation", {}).get("note")
        section = section.updated(held_out_metrics=f"none: {why}" if why else NO_VALIDATION)
    return section


def _grade(r: _Run, val: _Validation, seg_model: torch.nn.Module | None, seg_cfg: SegConfig | None,
           ) -> tuple[GradeNet | None, GradeConfig | None, ModelSection | None]:
    """The grade model the run trains and its section; or, when only the U-Net was retrained, the source's grade
    model re-measured with the new masks (on the split it was trained for only); or nothing to add."""
    masks_text = "predicted by the segmentation model" if val.score is not None else "ground truth"
    if r.want_grade:
        model, config, info = train_grade(r.cfg, r.prep, r.progress, seg_model, seg_cfg)
        engine = scoring_engine(r.device, r.progress, grade=model, grade_size=config.image_size)
        measured = grade_validation(engine, config, val.arrays, val.masks, r.index, val.scored, r.device, r.cfg.seed)
        section = ModelSection.trained(dataclasses.asdict(config), **{
            **measured, "validation_masks": masks_text, "history": r.prep.history["grade"], **info})
        if not val.scored.val:
            section = section.updated(validation_masks=None, held_out_metrics=NO_VALIDATION)
        return model, config, section
    if r.want_seg and val.score is not None:
        # The grade model is copied, but it crops where the new U-Net draws: re-measure it with those masks
        # (only on the split it was trained for: otherwise its "validation" patients include its training ones).
        try:
            kept, kept_cfg = load_grade(r.source, r.device)
            source_card = load_card(r.source)
            comparable = same_split(source_card, r.split) and source_card.grade.held_out
        except WeightsError:
            comparable = False
        if comparable:
            engine = scoring_engine(r.device, r.progress, grade=kept, grade_size=kept_cfg.image_size)
            return None, None, ModelSection(grade_validation(engine, kept_cfg, val.arrays, val.masks, r.index,
                                                             val.scored, r.device, r.cfg.seed)).updated(
                validation_masks="predicted by this run's segmentation model")
    return None, None, None
