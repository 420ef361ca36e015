"""One training run end to end: prepare, train what the task asks for, measure, publish."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lggdemo.data.arrays import SliceArrays
from lggdemo.device import describe
from lggdemo.evaluation.scoring import score_segmentation
from lggdemo.models import MODELS
from lggdemo.models.networks import GradeConfig, GradeNet, SegConfig
from lggdemo.models.postprocess import patient_rule_text
from lggdemo.models.weights import CARD_FILE, WeightsError, active_dir, load_card, load_grade, load_segmentation
from lggdemo.train.card import publish, signals_deferred
from lggdemo.train.config import TrainConfig
from lggdemo.train.distributed import is_main
from lggdemo.train.events import DONE, INFO, START, TASK_MODELS
from lggdemo.train.finetune_data import load_corrections
from lggdemo.train.finetune_report import fine_tune_report
from lggdemo.train.grade import grade_validation, train_grade
from lggdemo.train.loop import precision_warning
from lggdemo.train.prepare import choose_split, load_index, prepare, training_device
from lggdemo.train.progress import Progress, ProgressCallback
from lggdemo.train.scoring import scoring_engine
from lggdemo.train.segmentation import train_unet
from lggdemo.train.split import same_split

#: What a card says in place of held-out numbers when the run trained on every patient (the bundled preset).
NO_VALIDATION = ("none: trained on every patient given; the cross-validation of the same recipe "
                 "(lggdemo-crossval --record-in) is its estimate")


def run(cfg: TrainConfig, listeners: Sequence[ProgressCallback] = (), stop: threading.Event | None = None) -> Path:
    """Train what ``cfg.task`` asks for and publish a complete weights folder at ``cfg.out``."""
    cfg.validate()
    progress = Progress(listeners, stop)
    started = time.monotonic()
    device = training_device(cfg)
    index = load_index(cfg)
    split = choose_split(cfg, index)
    out = Path(cfg.out)
    source = Path(cfg.complete_from or cfg.init_from or (out if (out / CARD_FILE).is_file() else active_dir()))
    models = TASK_MODELS[cfg.task]
    want_seg, want_grade = "segmentation" in models, "grade" in models
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
    card: dict[str, Any] = {}

    seg_model: torch.nn.Module | None = None
    seg_cfg: SegConfig | None = None
    if want_seg:
        seg_model, seg_cfg, seg_info = train_unet(cfg, prep, progress)
    else:
        try:
            seg_model, seg_cfg = load_segmentation(source, device)
        except WeightsError:
            progress.emit(INFO, message=f"no segmentation model in {source}: grade validation uses true masks")
    if not is_main():  # under torchrun the other ranks train alongside rank 0; measuring and publishing are its
        if want_grade:
            train_grade(cfg, prep, progress, seg_model, seg_cfg)
        return out

    val_sel = prep.validation_selection()
    val_pred, seg_engine, val_score = None, None, None
    if seg_model is not None and seg_cfg is not None and val_sel.any():
        seg_engine = scoring_engine(device, progress, seg=seg_model, seg_size=seg_cfg.image_size)
        val_score = score_segmentation(seg_engine, seg_cfg, prep.arrays_256.images[val_sel],
                                       prep.arrays_256.masks[val_sel], prep.arrays_256.patient_ids[val_sel])
        val_pred = val_score.masks
    if want_seg and seg_cfg is not None:
        card["segmentation"] = {"config": dataclasses.asdict(seg_cfg), "trained_in_this_run": True,
                                "postprocess": patient_rule_text(seg_cfg.min_component_px),
                                "history": prep.history["segmentation"], **seg_info}
        if val_score is not None:
            card["segmentation"].update(val_score.card_entry())
        if prep.corrections is not None:
            seg_engine = seg_engine or scoring_engine(device, progress, seg=seg_model, seg_size=seg_cfg.image_size)
            card["segmentation"]["fine_tune"] = fine_tune_report(Path(str(cfg.init_from)), seg_engine, seg_cfg,
                                                                 prep, val_pred)
        if val_pred is None:  # no validation patient was scored; a fine-tune's report says why
            why = card["segmentation"].get("fine_tune", {}).get("validation", {}).get("note")
            card["segmentation"]["held_out_metrics"] = f"none: {why}" if why else NO_VALIDATION

    grade_model: GradeNet | None = None
    grade_cfg: GradeConfig | None = None
    val_arrays = SliceArrays(prep.arrays_256.images[val_sel], prep.arrays_256.masks[val_sel],
                             prep.arrays_256.patient_ids[val_sel], prep.arrays_256.numbers[val_sel])
    masks = val_pred if val_pred is not None else val_arrays.masks
    masks_text = "predicted by the segmentation model" if val_pred is not None else "ground truth"
    scored = prep.scored_split()  # the validation patients the numbers are measured on
    if want_grade:
        grade_model, grade_cfg, grade_info = train_grade(cfg, prep, progress, seg_model, seg_cfg)
        card["grade"] = {"config": dataclasses.asdict(grade_cfg), "trained_in_this_run": True,
                         **grade_validation(scoring_engine(device, progress, grade=grade_model,
                                                           grade_size=grade_cfg.image_size),
                                            grade_cfg, val_arrays, masks, index, scored, device, cfg.seed),
                         "validation_masks": masks_text, "history": prep.history["grade"], **grade_info}
        if not scored.val:
            card["grade"]["validation_masks"] = None
            card["grade"]["held_out_metrics"] = NO_VALIDATION
    elif want_seg and val_pred is not None:
        # The grade model is copied, but it crops where the new U-Net draws: re-measure it with those masks
        # (only on the split it was trained for: otherwise its "validation" patients include its training ones).
        try:
            kept, kept_cfg = load_grade(source, device)
            source_card = load_card(source)
            comparable = same_split(source_card, split) and source_card.grade.held_out
        except WeightsError:
            comparable = False
        if comparable:
            kept_engine = scoring_engine(device, progress, grade=kept, grade_size=kept_cfg.image_size)
            card["grade"] = {**grade_validation(kept_engine, kept_cfg, val_arrays, masks, index, scored, device, cfg.seed),
                             "validation_masks": "predicted by this run's segmentation model"}

    # --- publish: nothing has touched `out` until here ---
    progress.check()
    with signals_deferred():
        publish(cfg, out, source, card, index, split, device, seg_model, seg_cfg, grade_model, grade_cfg,
                 time.monotonic() - started)
    progress.emit(DONE, out=str(out), seconds=time.monotonic() - started,
                  metrics={m: card[m]["metrics"] for m in MODELS if "metrics" in card.get(m, {})})
    return out
