"""Metrics for both models and the evaluation CLI.

``python -m lggdemo.evaluate --data DIR [--weights DIR] [--split train|val] [--json FILE]`` scores weights on any
dataset in the kaggle_3m layout. The trainer's validation report calls the same functions, so the
numbers in a model card and the numbers a user recomputes on their own data mean the same thing.

Definitions (also written into every model card):
- masks: every patient-level score is of the masks the app's whole-patient mode shows
  (:func:`predict_patient_masks`: the 2D rule, then the largest 3D component per patient).
- per-volume Dice: one Dice over all voxels of a patient (prediction and truth stacked over slices),
  averaged over patients -- the measure of Buda et al. 2019. A patient with no tumour in either
  counts 1.
- tumour-slice Dice: per-slice 2D Dice averaged over slices whose ground truth shows tumour.
- grade AUC, accuracy, balanced accuracy: per patient, P(G3) from the area-weighted slice logits,
  threshold 0.5; 95% intervals by bootstrap over patients (2000 resamples, fixed seed).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from lggdemo.data import Clinical, DatasetIndex, SliceArrays
from lggdemo.engine import Engine, as_engine
from lggdemo.models import GradeConfig, GradeNet, SegConfig, masks_from_logits, patient_logit, seg_logits
from lggdemo.postprocess import keep_main_components_by_patient, patient_rule_text
from lggdemo.preprocess import crop_tumour, encode_clinical, normalize_images

DEFINITIONS = {
    "per_volume_dice_mean": "Mean over patients of the 3D Dice of each patient's stacked slices (Buda et al. 2019).",
    "per_volume_dice_median": "Median over patients of the per-patient 3D Dice.",
    "tumour_slice_dice": "Mean 2D Dice over slices whose ground-truth mask shows tumour.",
    "auc": "Per-patient ROC AUC of P(G3) against the recorded grade; 95% CI by bootstrap over patients.",
    "accuracy": "Per-patient accuracy of P(G3) >= 0.5.",
    "balanced_accuracy": "Per-patient mean of G2 and G3 recall at P(G3) >= 0.5.",
    "age_baseline_auc": "ROC AUC of a logistic regression on age alone, fitted on the training patients.",
}


@dataclass(frozen=True)
class Metric:
    value: float
    ci95: tuple[float, float] | None = None
    n: int = 0
    definition: str = ""

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["ci95"] = list(self.ci95) if self.ci95 else None
        return d


# --- primitives ------------------------------------------------------------------------------


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two binary arrays of any shape; 1.0 when both are empty (nothing to find, nothing found)."""
    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    denom = int(p.sum()) + int(t.sum())
    return 1.0 if denom == 0 else 2.0 * int((p & t).sum()) / denom


def per_volume_dice(pred: np.ndarray, truth: np.ndarray, patient_ids: Sequence[str]) -> dict[str, float]:
    ids = np.asarray(patient_ids)
    return {pid: dice(pred[ids == pid], truth[ids == pid]) for pid in dict.fromkeys(ids.tolist())}


def tumour_slice_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    scores = [dice(p, t) for p, t in zip(pred, truth) if t.any()]
    return float(np.mean(scores)) if scores else float("nan")


AREA_BINS = (1, 256, 1024, 4096)  # ground-truth tumour pixels per 256² slice


def tumour_slice_dice_by_area(pred: np.ndarray, truth: np.ndarray,
                              edges: Sequence[int] = AREA_BINS) -> dict[str, dict[str, float]]:
    """Tumour-slice Dice split by the true tumour's area: where a U-Net fails is mostly a matter of size.

    Keys are ``"lo-hi px"`` (the last bin open-ended); values give the slice count and mean Dice.
    """
    areas = truth.reshape(len(truth), -1).sum(1)
    scores = np.array([dice(p, t) for p, t in zip(pred, truth)])
    out: dict[str, dict[str, float]] = {}
    for lo, hi in zip(edges, [*edges[1:], None]):
        sel = (areas >= lo) & (areas < hi if hi is not None else True)
        if sel.any():
            name = f"{lo}-{hi - 1} px" if hi is not None else f">={lo} px"
            out[name] = {"n": int(sel.sum()), "dice": float(scores[sel].mean())}
    return out


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Mann-Whitney AUC with ties counted half; NaN when only one class is present."""
    y = np.asarray(labels, int)
    s = np.asarray(scores, float)
    pos, neg = s[y == 1], s[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def accuracy(labels: Sequence[int], probs: Sequence[float]) -> float:
    y, p = np.asarray(labels, int), np.asarray(probs, float) >= 0.5
    return float((p == y).mean()) if len(y) else float("nan")


def balanced_accuracy(labels: Sequence[int], probs: Sequence[float]) -> float:
    y, p = np.asarray(labels, int), (np.asarray(probs, float) >= 0.5).astype(int)
    recalls = [float((p[y == c] == c).mean()) for c in (0, 1) if (y == c).any()]
    return float(np.mean(recalls)) if recalls else float("nan")


def bootstrap_ci(
    fn: Callable[[np.ndarray, np.ndarray], float],
    labels: Sequence[int],
    scores: Sequence[float],
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile 95% interval, resampling patients; resamples with one class only are redrawn."""
    y, s = np.asarray(labels), np.asarray(scores, float)
    if len(y) < 2 or len(np.unique(y)) < 2:
        return None
    rng = np.random.default_rng(seed)
    values = []
    while len(values) < n_boot:
        idx = rng.integers(0, len(y), len(y))
        if len(np.unique(y[idx])) < 2:
            continue
        v = fn(y[idx], s[idx])
        if np.isfinite(v):
            values.append(v)
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def mean_ci(values: Sequence[float], n_boot: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    v = np.asarray(values, float)
    if len(v) < 2:
        return None
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), (n_boot, len(v)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def grade_metrics(labels: Sequence[int], probs: Sequence[float], seed: int = 0) -> dict[str, Metric]:
    n = len(labels)
    return {
        "auc": Metric(roc_auc(labels, probs), bootstrap_ci(roc_auc, labels, probs, seed=seed), n, DEFINITIONS["auc"]),
        "accuracy": Metric(accuracy(labels, probs), bootstrap_ci(accuracy, labels, probs, seed=seed), n,
                           DEFINITIONS["accuracy"]),
        "balanced_accuracy": Metric(balanced_accuracy(labels, probs),
                                    bootstrap_ci(balanced_accuracy, labels, probs, seed=seed), n,
                                    DEFINITIONS["balanced_accuracy"]),
    }


def age_baseline_probs(train_ages: Sequence[float | None], train_labels: Sequence[int],
                       ages: Sequence[float | None]) -> np.ndarray:
    """P(G3) from a logistic regression on age alone (missing ages imputed with the training mean)."""
    from sklearn.linear_model import LogisticRegression

    tr = np.array([np.nan if a is None else a for a in train_ages], float)
    mean = float(np.nanmean(tr)) if np.isfinite(tr).any() else 45.0
    x_tr = np.where(np.isfinite(tr), tr, mean)[:, None]
    te = np.array([np.nan if a is None else a for a in ages], float)
    x_te = np.where(np.isfinite(te), te, mean)[:, None]
    model = LogisticRegression().fit(x_tr, np.asarray(train_labels, int))
    return model.predict_proba(x_te)[:, 1]


# --- model evaluation ------------------------------------------------------------------------


@torch.no_grad()
def segment_logits(model: torch.nn.Module | Engine, config: SegConfig, images_256: np.ndarray,
                   device: torch.device | None = None) -> torch.Tensor:
    """(N, 256, 256, 3) uint8 -> (N, 1, s, s) float32 CPU tumour logits at the U-Net's input side ``s``.

    The forward half of :func:`segment_slices`, on its own so that a caller needing the logits
    themselves (the teaching view's threshold slider) gets exactly the numbers the masks come from.
    ``model`` is an engine (:mod:`lggdemo.engine`) or a bare U-Net (run on the ``torch`` engine); the test-time
    flip is :func:`lggdemo.models.seg_logits`'s, whichever engine runs the network.
    """
    from lggdemo.preprocess import prepare_images

    engine = as_engine(model, device)
    x = prepare_images(images_256, config.image_size)
    return seg_logits(lambda t: torch.from_numpy(engine.segment(t.numpy())), config, x).float()


@torch.no_grad()
def segment_slices(model: torch.nn.Module | Engine, config: SegConfig, images_256: np.ndarray,
                   device: torch.device | None = None, batch_size: int = 32, *,
                   probabilities: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, 256, 256, 3) uint8 -> masks (N, 256, 256) uint8, and tumour probabilities when asked.

    The one segmentation path: the trainer's validation, this evaluator and the app's Predictor all
    call it, so a card's Dice describes exactly what the app shows.
    """
    size = images_256.shape[1]
    masks, probs = [], []
    engine = as_engine(model, device)
    for i in range(0, len(images_256), batch_size):
        logits = segment_logits(engine, config, images_256[i : i + batch_size])
        masks.append(masks_from_logits(logits, config, size))
        if probabilities:
            if logits.shape[-1] != size:
                logits = torch.nn.functional.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)
            probs.append(torch.sigmoid(logits[:, 0]).cpu().numpy().astype(np.float32))
    empty = np.zeros((0, size, size), np.uint8)
    return (np.concatenate(masks) if masks else empty,
            (np.concatenate(probs) if probs else empty.astype(np.float32)) if probabilities else None)


def predict_patient_masks(model: torch.nn.Module | Engine, config: SegConfig, images_256: np.ndarray,
                          patient_ids: Sequence[str], device: torch.device | None = None, batch_size: int = 32) -> np.ndarray:
    """(N, 256, 256, 3) uint8 slices of one or more patients -> the masks the whole-patient app shows.

    The 2D rule of :func:`segment_slices`, then the whole-patient rule per patient
    (:func:`lggdemo.postprocess.keep_main_components_by_patient`). Every patient-level score goes through
    here -- this CLI, the trainer's validation (and so every card and cross-validation fold), the bundled
    weights' regression test -- so no caller can score masks the app would not show. ``patient_ids``
    names each slice's patient, slices of a patient in slice order.
    """
    masks = segment_slices(model, config, images_256, device, batch_size)[0]
    return keep_main_components_by_patient(masks, patient_ids)


@dataclass
class SegEvaluation:
    per_patient: dict[str, float]
    metrics: dict[str, Metric]


def evaluate_segmentation(pred: np.ndarray, truth: np.ndarray, patient_ids: Sequence[str]) -> SegEvaluation:
    per = per_volume_dice(pred, truth, patient_ids)
    vals = list(per.values())
    n = len(vals)
    return SegEvaluation(per, {
        "per_volume_dice_mean": Metric(float(np.mean(vals)), mean_ci(vals), n, DEFINITIONS["per_volume_dice_mean"]),
        "per_volume_dice_median": Metric(float(np.median(vals)), None, n, DEFINITIONS["per_volume_dice_median"]),
        "tumour_slice_dice": Metric(tumour_slice_dice(pred, truth), None, int(truth.reshape(len(truth), -1).any(1).sum()),
                                    DEFINITIONS["tumour_slice_dice"]),
    })


@torch.no_grad()
def grade_slice_logits(model: GradeNet | Engine, config: GradeConfig, images_256: np.ndarray, masks_256: np.ndarray,
                       clinical: Clinical, device: torch.device | None = None, batch_size: int = 64) -> np.ndarray:
    """Per-slice G3 logits for one patient: tumour crops from normalised slices + the clinical vector.

    ``model``: an engine or a bare grade network (run on the ``torch`` engine).
    """
    engine = as_engine(model, device)
    clin = encode_clinical(clinical, config.age_scale)
    logits = []
    for i in range(0, len(images_256), batch_size):
        full = torch.from_numpy(normalize_images(images_256[i : i + batch_size]))
        crops = crop_tumour(full, masks_256[i : i + batch_size], config.image_size).numpy()
        logits.append(np.asarray(engine.grade(crops, np.repeat(clin[None], len(crops), axis=0)), np.float32))
    return np.concatenate(logits) if logits else np.zeros(0, np.float32)


@dataclass
class GradeEvaluation:
    per_patient: dict[str, float]  # P(G3)
    labels: dict[str, int]
    metrics: dict[str, Metric] = field(default_factory=dict)


def evaluate_grade(model: GradeNet | Engine, config: GradeConfig, arrays: SliceArrays, masks_256: np.ndarray,
                   index: DatasetIndex, patients: Sequence[str], device: torch.device | None = None,
                   seed: int = 0) -> GradeEvaluation:
    """Patient-level P(G3) for every patient with a recorded grade, and the metrics over them."""
    probs, labels = {}, {}
    model = as_engine(model, device)
    for pid in patients:
        c = index.clinical_for(pid)
        if c.grade is None:
            continue
        sel = arrays.patient_ids == pid
        logits = grade_slice_logits(model, config, arrays.images[sel], masks_256[sel], Clinical(c.age, c.sex), device)
        areas = masks_256[sel].reshape(sel.sum(), -1).sum(1)
        probs[pid] = float(1 / (1 + np.exp(-patient_logit(logits, areas))))
        labels[pid] = int(c.grade == "G3")
    y, p = list(labels.values()), list(probs.values())
    return GradeEvaluation(probs, labels, grade_metrics(y, p, seed=seed) if y else {})


# --- CLI -------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    import lggdemo  # noqa: F401  (torchvision guard)
    from lggdemo.data import DatasetError, scan_dataset, slice_arrays
    from lggdemo.device import DeviceError, choose_device
    from lggdemo.engine import CHOICES as ENGINES
    from lggdemo.engine import ENV_VAR, EngineError, choose_engine, load_engine
    from lggdemo.models import grade_config_from_dict, seg_config_from_dict
    from lggdemo.weights import GRADE_FILE, SEG_FILE, WeightsError, active_dir, load_card, read_config

    ap = argparse.ArgumentParser(prog="python -m lggdemo.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a kaggle_3m folder (or its parent)")
    ap.add_argument("--weights", default=None, help="weights folder (default: the active weights)")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--patients", default=None, help="comma-separated patient folders to score (default: all)")
    which.add_argument("--split", choices=["train", "val"], default=None,
                       help="score the patients the weights' card lists on that side of its split")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--engine", choices=ENGINES, default=None,
                    help=f"what runs the networks (default: ${ENV_VAR}, else auto: ONNX Runtime on a CPU, PyTorch on a GPU)")
    ap.add_argument("--json", default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    try:
        device = choose_device(args.device)
        choice = choose_engine(args.engine, device)
        index = scan_dataset(args.data)
        wdir = Path(args.weights) if args.weights else active_dir()
        seg_cfg = seg_config_from_dict(read_config(wdir / SEG_FILE))
        seg = load_engine(wdir, device, choice, models=("segmentation",))
    except (DatasetError, DeviceError, WeightsError, EngineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if seg.note:
        print(f"note: {seg.note}", file=sys.stderr)
    for p in index.problems:
        print(f"warning: {p}", file=sys.stderr)
    chosen = args.patients.split(",") if args.patients else None
    if args.split:
        try:
            chosen = list(getattr(load_card(wdir).split, args.split))
        except WeightsError as exc:
            print(f"error: the card in {wdir} has no {args.split} split: {exc}", file=sys.stderr)
            return 2
        if not chosen:
            print(f"error: the card in {wdir} has no {args.split} split", file=sys.stderr)
            return 2
    arrays = slice_arrays(index, 256)
    keep = np.isin(arrays.patient_ids, chosen) if chosen is not None else np.ones(len(arrays.patient_ids), bool)
    arrays = SliceArrays(arrays.images[keep], arrays.masks[keep], arrays.patient_ids[keep], arrays.numbers[keep])
    pred = predict_patient_masks(seg, seg_cfg, arrays.images, arrays.patient_ids, device)
    seg_eval = evaluate_segmentation(pred, arrays.masks, arrays.patient_ids)
    by_area = tumour_slice_dice_by_area(pred, arrays.masks)
    result: dict[str, object] = {"weights": str(wdir), "data": str(index.root), "device": str(device),
                                 "engine": seg.description,
                                 "segmentation": {"postprocess": patient_rule_text(seg_cfg.min_component_px),
                                                  "per_patient_dice": seg_eval.per_patient,
                                                  "metrics": {k: m.to_dict() for k, m in seg_eval.metrics.items()},
                                                  "tumour_slice_dice_by_area": by_area}}
    print(f"masks: {patient_rule_text(seg_cfg.min_component_px)} (as the app's whole-patient mode shows them)")
    print(f"{'patient':<28} {'per-volume Dice':>15}")
    for pid, d in seg_eval.per_patient.items():
        print(f"{pid:<28} {d:>15.3f}")
    for name, m in seg_eval.metrics.items():
        ci = f"  (95% CI {m.ci95[0]:.3f}–{m.ci95[1]:.3f})" if m.ci95 else ""
        print(f"{name}: {m.value:.3f}{ci}  n={m.n}")
    for area, b in by_area.items():
        print(f"tumour-slice Dice, true tumour {area}: {b['dice']:.3f}  n={b['n']}")
    try:
        grade_cfg = grade_config_from_dict(read_config(wdir / GRADE_FILE))
        grade = load_engine(wdir, device, choice, models=("grade",))
    except WeightsError as exc:
        print(f"grade model not evaluated: {exc}", file=sys.stderr)
    else:
        patients = list(dict.fromkeys(arrays.patient_ids.tolist()))
        g = evaluate_grade(grade, grade_cfg, arrays, pred, index, patients, device)
        result["grade"] = {"per_patient_p_g3": g.per_patient, "labels": g.labels,
                           "metrics": {k: m.to_dict() for k, m in g.metrics.items()}}
        for name, m in g.metrics.items():
            ci = f"  (95% CI {m.ci95[0]:.3f}–{m.ci95[1]:.3f})" if m.ci95 else ""
            print(f"grade {name}: {m.value:.3f}{ci}  n={m.n}")
        if not g.metrics:
            print("grade: data.csv has no grades for these patients; not evaluated")
    try:
        result["card_version"] = load_card(wdir).version
    except WeightsError:
        pass
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
