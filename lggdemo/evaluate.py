"""Metrics for both models and the evaluation CLI.

``python -m lggdemo.evaluate --data DIR [--weights DIR] [--split train|val] [--json FILE]`` scores weights on any
dataset in the kaggle_3m layout. The trainer's validation report calls the same functions, so the
numbers in a model card and the numbers a user recomputes on their own data mean the same thing.

Definitions (also written into every model card):
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
from lggdemo.models import GradeConfig, GradeNet, SegConfig, masks_from_logits, patient_logit, seg_logits
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
def segment_slices(model: torch.nn.Module, config: SegConfig, images_256: np.ndarray, device: torch.device,
                   batch_size: int = 32, *, probabilities: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, 256, 256, 3) uint8 -> masks (N, 256, 256) uint8, and tumour probabilities when asked.

    The one segmentation path: the trainer's validation, this evaluator and the app's Predictor all
    call it, so a card's Dice describes exactly what the app shows.
    """
    from lggdemo.preprocess import prepare_images

    model.eval()
    size = images_256.shape[1]
    masks, probs = [], []
    for i in range(0, len(images_256), batch_size):
        x = prepare_images(images_256[i : i + batch_size], config.image_size).to(device)
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            logits = seg_logits(model, config, x)
        logits = logits.float()
        masks.append(masks_from_logits(logits, config, size))
        if probabilities:
            if logits.shape[-1] != size:
                logits = torch.nn.functional.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)
            probs.append(torch.sigmoid(logits[:, 0]).cpu().numpy().astype(np.float32))
    empty = np.zeros((0, size, size), np.uint8)
    return (np.concatenate(masks) if masks else empty,
            (np.concatenate(probs) if probs else empty.astype(np.float32)) if probabilities else None)


def predict_masks(model: torch.nn.Module, config: SegConfig, images_256: np.ndarray, device: torch.device,
                  batch_size: int = 32) -> np.ndarray:
    return segment_slices(model, config, images_256, device, batch_size)[0]


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
def grade_slice_logits(model: GradeNet, config: GradeConfig, images_256: np.ndarray, masks_256: np.ndarray,
                       clinical: Clinical, device: torch.device, batch_size: int = 64) -> np.ndarray:
    """Per-slice G3 logits for one patient: tumour crops from normalised slices + the clinical vector."""
    model.eval()
    clin = torch.from_numpy(encode_clinical(clinical, config.age_scale))
    logits = []
    for i in range(0, len(images_256), batch_size):
        full = torch.from_numpy(normalize_images(images_256[i : i + batch_size]))
        crops = crop_tumour(full, masks_256[i : i + batch_size], config.image_size).to(device)
        c = clin[None].expand(len(crops), -1).to(device)
        logits.append(model(crops, c)[:, 0].float().cpu().numpy())
    return np.concatenate(logits) if logits else np.zeros(0, np.float32)


@dataclass
class GradeEvaluation:
    per_patient: dict[str, float]  # P(G3)
    labels: dict[str, int]
    metrics: dict[str, Metric] = field(default_factory=dict)


def evaluate_grade(model: GradeNet, config: GradeConfig, arrays: SliceArrays, masks_256: np.ndarray,
                   index: DatasetIndex, patients: Sequence[str], device: torch.device, seed: int = 0) -> GradeEvaluation:
    """Patient-level P(G3) for every patient with a recorded grade, and the metrics over them."""
    probs, labels = {}, {}
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
    from lggdemo.weights import WeightsError, active_dir, load_card, load_grade, load_segmentation

    ap = argparse.ArgumentParser(prog="python -m lggdemo.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a kaggle_3m folder (or its parent)")
    ap.add_argument("--weights", default=None, help="weights folder (default: the active weights)")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--patients", default=None, help="comma-separated patient folders to score (default: all)")
    which.add_argument("--split", choices=["train", "val"], default=None,
                       help="score the patients the weights' card lists on that side of its split")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    try:
        device = choose_device(args.device)
        index = scan_dataset(args.data)
        wdir = Path(args.weights) if args.weights else active_dir()
        seg, seg_cfg = load_segmentation(wdir, device)
    except (DatasetError, DeviceError, WeightsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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
    pred = predict_masks(seg, seg_cfg, arrays.images, device)
    seg_eval = evaluate_segmentation(pred, arrays.masks, arrays.patient_ids)
    by_area = tumour_slice_dice_by_area(pred, arrays.masks)
    result: dict[str, object] = {"weights": str(wdir), "data": str(index.root), "device": str(device),
                                 "segmentation": {"per_patient_dice": seg_eval.per_patient,
                                                  "metrics": {k: m.to_dict() for k, m in seg_eval.metrics.items()},
                                                  "tumour_slice_dice_by_area": by_area}}
    print(f"{'patient':<28} {'per-volume Dice':>15}")
    for pid, d in seg_eval.per_patient.items():
        print(f"{pid:<28} {d:>15.3f}")
    for name, m in seg_eval.metrics.items():
        ci = f"  (95% CI {m.ci95[0]:.3f}–{m.ci95[1]:.3f})" if m.ci95 else ""
        print(f"{name}: {m.value:.3f}{ci}  n={m.n}")
    for area, b in by_area.items():
        print(f"tumour-slice Dice, true tumour {area}: {b['dice']:.3f}  n={b['n']}")
    try:
        grade, grade_cfg = load_grade(wdir, device)
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
