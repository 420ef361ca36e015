"""The grade model: its training data (tumour crops + clinical vector), its fit, its cross-validation.

Grade metrics come from patients the models never saw (the held-out split, with the masks the
segmentation model predicts, as in the app) and, because those are few, also from k-fold
cross-validation over the training patients. The shipped grade model is trained on all training patients.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lggdemo.data.arrays import SliceArrays
from lggdemo.data.kaggle import Clinical, DatasetIndex
from lggdemo.evaluation.scoring import evaluate_grade
from lggdemo.inference.grade import BASE_RATE_SOURCE, base_rate_g3
from lggdemo.metrics.bootstrap import bootstrap_ci
from lggdemo.metrics.definitions import DEFINITIONS, Metric
from lggdemo.metrics.grade import age_baseline_probs, grade_metrics, roc_auc, roc_auc_rows
from lggdemo.models.networks import GradeConfig, GradeNet, SegConfig, build_grade, init_grade_from_segmentation, patient_logit
from lggdemo.models.preprocess import AgeScale, crop_tumour, encode_clinical, normalize_images
from lggdemo.train.augmentation import augment
from lggdemo.train.config import TrainConfig, TrainError
from lggdemo.train.distributed import distribute, is_main, rank_seed
from lggdemo.train.events import CV_VARIANTS, INFO, Fit, cv_fit, final_fit
from lggdemo.train.loop import autocast, channels_last, gather_batch, train_loop
from lggdemo.train.prepare import Prepared
from lggdemo.train.progress import Progress
from lggdemo.train.scoring import scoring_engine
from lggdemo.train.split import Split, kfold


@dataclass
class GradeData:
    """Tumour crops of the training patients (ground-truth masks), their clinical vectors and labels."""

    crops: torch.Tensor
    clinical: torch.Tensor
    labels: torch.Tensor
    patients: np.ndarray


def grade_data(prep: Prepared, patients: Sequence[str], size: int, scale: AgeScale) -> GradeData:
    a = prep.arrays_256
    crops, clin, labels, owners = [], [], [], []
    for pid in patients:
        c = prep.index.clinical_for(pid)
        if c.grade is None:
            continue
        sel = (a.patient_ids == pid) & (a.masks.reshape(len(a.masks), -1).max(1) > 0)
        if not sel.any():
            continue
        full = torch.from_numpy(normalize_images(a.images[sel]))
        crops.append(crop_tumour(full, a.masks[sel], size))
        vec = torch.from_numpy(encode_clinical(Clinical(c.age, c.sex), scale))
        clin.append(vec[None].expand(int(sel.sum()), -1))
        labels.append(torch.full((int(sel.sum()),), float(c.grade == "G3")))
        owners += [pid] * int(sel.sum())
    if not crops:
        raise TrainError("No training patient has both a recorded grade and a tumour slice.")
    return GradeData(torch.cat(crops), torch.cat(clin), torch.cat(labels), np.array(owners))


def fit_grade(cfg: TrainConfig, grade_cfg: GradeConfig, data: GradeData, dev: torch.device, progress: Progress,
              fit: Fit, seg_model: torch.nn.Module | None = None,
              history: list[dict[str, Any]] | None = None) -> tuple[GradeNet, dict[str, Any]]:
    """Train one grade model; sampling gives each class, and each patient within it, equal weight."""
    torch.manual_seed(cfg.seed)
    model = build_grade(grade_cfg)
    transfer = seg_model is not None and cfg.grade_init == "segmentation"
    copied = init_grade_from_segmentation(model, seg_model) if transfer else 0  # type: ignore[arg-type]
    model = model.to(dev)
    net = distribute(model, dev, find_unused=not (grade_cfg.use_image and grade_cfg.use_clinical),
                     channels_last=channels_last(dev, cfg.precision))
    counts = {p: int((data.patients == p).sum()) for p in set(data.patients.tolist())}
    n_pat = {c: len({p for p in counts if float(data.labels[data.patients == p][0]) == c}) for c in (0.0, 1.0)}
    w = torch.tensor([1.0 / counts[p] / max(1, n_pat[float(y)]) for p, y in zip(data.patients, data.labels.tolist())])
    gen = torch.Generator().manual_seed(rank_seed(cfg.seed + 1))

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        xb, _ = augment(gather_batch(data.crops, idx, dev), None, gen)
        with autocast(dev, cfg.precision):
            logits = net(xb, gather_batch(data.clinical, idx, dev))
        return F.binary_cross_entropy_with_logits(logits.float()[:, 0], data.labels[idx].to(dev))

    info = train_loop(model, torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-3), w, batch_loss,
                      name="grade", epochs=cfg.grade_epochs, samples=cfg.grade_samples, cfg=cfg, gen=gen,
                      progress=progress, fit=fit, history=history)
    return model.eval(), {**info, "encoder_tensors_from_segmentation": copied}


def _patient_probs(model: GradeNet, data: GradeData, patients: Sequence[str], dev: torch.device,
                   progress: Progress | None = None) -> dict[str, float]:
    engine = scoring_engine(dev, progress, grade=model, grade_size=model.config.image_size)
    out = {}
    for pid in patients:
        sel = data.patients == pid
        if not sel.any():
            continue
        logits = engine.grade(data.crops[sel].numpy(), data.clinical[sel].numpy())
        # Crops here come from ground-truth masks; their pixel counts are not kept, so weight equally.
        out[pid] = float(1 / (1 + np.exp(-patient_logit(logits, np.ones_like(logits)))))
    return out


def train_grade(cfg: TrainConfig, prep: Prepared, progress: Progress, seg_model: torch.nn.Module | None,
                seg_cfg: SegConfig | None) -> tuple[GradeNet, GradeConfig, dict[str, Any]]:
    dev = prep.device
    train_ages = [prep.index.clinical_for(p).age for p in prep.split.train]
    known = [a for a in train_ages if a is not None]
    scale = AgeScale(float(np.mean(known)) if known else 45.0, float(np.std(known)) if len(known) > 1 else 13.0)
    grade_cfg = GradeConfig(image_size=cfg.grade_image_size, age_scale=scale)
    data = grade_data(prep, prep.split.train, cfg.grade_image_size, scale)
    report: dict[str, Any] = {}
    started = time.monotonic()
    folds_run = 0  # the folds cross-validation actually ran with (it is skipped when a grade has too few patients)

    # k-fold CV over the training patients: more patients behind the numbers than the held-out split.
    if cfg.folds >= 2:
        patients = sorted(set(data.patients.tolist()))
        labels = [int(float(data.labels[data.patients == p][0])) for p in patients]
        if min(labels.count(0), labels.count(1)) < cfg.folds:
            progress.emit(INFO, message=f"cross-validation skipped: fewer than {cfg.folds} patients of a grade")
        else:
            variants = dict(zip(CV_VARIANTS, (grade_cfg, dataclasses.replace(grade_cfg, use_image=False),
                                              dataclasses.replace(grade_cfg, use_clinical=False))))
            cv: dict[str, Any] = {"folds": cfg.folds, "seed": cfg.seed, "masks": "ground truth", "variants": {}}
            for name, vcfg in variants.items():
                oof: dict[str, float] = {}
                for i, (tr, te) in enumerate(kfold(patients, labels, cfg.folds, cfg.seed)):
                    sel = np.isin(data.patients, tr)
                    sub = GradeData(data.crops[sel], data.clinical[sel], data.labels[sel], data.patients[sel])
                    m, _ = fit_grade(cfg, vcfg, sub, dev, progress, cv_fit(name, i, cfg.folds), seg_model)
                    if is_main():  # scoring is rank 0's: DDP keeps the fold's model the same on every rank
                        oof.update(_patient_probs(m, data, te, dev, progress))
                if not is_main():
                    continue
                y = [labels[patients.index(p)] for p in oof]
                cv["variants"][name] = {k: v.to_dict() for k, v in grade_metrics(y, list(oof.values()), cfg.seed).items()}
                progress.emit(INFO, message=f"grade CV {name}: AUC {cv['variants'][name]['auc']['value']:.3f}")
            if is_main():  # the other ranks only trained the folds' models
                ages = [prep.index.clinical_for(p).age for p in patients]
                # Age-only baseline under the same folds, so it sits beside the CV numbers honestly.
                base: dict[str, float] = {}
                for tr, te in kfold(patients, labels, cfg.folds, cfg.seed):
                    probs = age_baseline_probs([ages[patients.index(p)] for p in tr], [labels[patients.index(p)] for p in tr],
                                               [ages[patients.index(p)] for p in te])
                    base.update(dict(zip(te, probs)))
                yb = [labels[patients.index(p)] for p in base]
                pb = list(base.values())
                cv["age_baseline_auc"] = Metric(roc_auc(yb, pb), bootstrap_ci(roc_auc_rows, yb, pb), len(yb),
                                                DEFINITIONS["age_baseline_auc"]).to_dict()
                report["cross_validation"] = cv
            folds_run = cfg.folds

    model, info = fit_grade(cfg, grade_cfg, data, dev, progress, final_fit(folds_run), seg_model, prep.history["grade"])
    info["training_seconds"] = time.monotonic() - started
    report.update(info)
    return model, grade_cfg, report


def grade_validation(model: GradeNet, config: GradeConfig, val_arrays: SliceArrays, masks: np.ndarray,
                     index: DatasetIndex, split: Split, device: torch.device, seed: int) -> dict[str, Any]:
    """Held-out grade metrics, with the age-only baseline fitted on the training patients beside them.

    Per held-out patient the card keeps the model's P(G3) and logit and the age-only P(G3): under ``--fold I/K``
    these are the out-of-fold predictions ``lggdemo-crossval --grade`` pools and calibrates.
    """
    g = evaluate_grade(model, config, val_arrays, masks, index, split.val, device, seed)
    metrics = {k: m.to_dict() for k, m in g.metrics.items()}
    labelled_train = [p for p in split.train if index.clinical_for(p).grade is not None]
    age: dict[str, float] = {}
    if g.labels and labelled_train:
        probs = age_baseline_probs([index.clinical_for(p).age for p in labelled_train],
                                   [int(index.clinical_for(p).grade == "G3") for p in labelled_train],
                                   [index.clinical_for(p).age for p in g.labels])
        age = {p: float(v) for p, v in zip(g.labels, probs)}
        y = list(g.labels.values())
        metrics["age_baseline_auc"] = Metric(roc_auc(y, probs), bootstrap_ci(roc_auc_rows, y, probs, seed=seed),
                                             len(y), DEFINITIONS["age_baseline_auc"]).to_dict()
    rate = base_rate_g3({p: index.clinical_for(p).grade for p in split.train}, split.train)  # shown when the grade is withheld
    return {"metrics": metrics, "per_patient_p_g3": g.per_patient, "per_patient_logit": g.logits, "labels": g.labels,
            "per_patient_age_p_g3": age, **({"base_rate_g3": rate.to_dict(BASE_RATE_SOURCE)} if rate else {})}
