"""Issue 27: the test-time flip, out of fold, by the rule written first (selection-rule.txt, 2026-12-07).

Each of C1's fold models scores only its own held-out patients, with the scorer the trainer and cross-validation use
(lggdemo.evaluation.scoring.score_segmentation: the app's whole-patient masks), once with its config's flip and once
without; pooled as lggdemo.evaluation.crossval pools folds. Each fold's result is kept in OUT/fold-I.json as it
finishes, so folds can be scored as their models appear; the pooled file is written once all three exist (partial
otherwise, deciding nothing).

    python docs/experiments/flip_tta_oof.py --data /tmp/lgg/kaggle_3m --folds /work/folds --out docs/experiments
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lggdemo._fs import atomic_write_bytes
from lggdemo.data.arrays import slice_arrays
from lggdemo.data.kaggle import scan_dataset
from lggdemo.evaluation.crossval import pool_area_bins
from lggdemo.evaluation.scoring import score_segmentation
from lggdemo.metrics.bootstrap import mean_ci
from lggdemo.models.engine import load_engine
from lggdemo.models.weights import load_segmentation, read_card

#: The rule, as written before measuring (docs/experiments/selection-rule.txt).
PER_VOLUME_MIN_GAIN = 0.003
TUMOUR_SLICE_MIN_GAIN = 0.005
K = 3


def score_fold(folder: Path, arrays: Any) -> dict[str, Any]:
    card = read_card(folder)
    val = list(card["split"]["val"])
    train = set(card["split"]["train"])
    assert not train & set(val), f"{folder}: held-out patients among its training patients"
    sel = np.isin(arrays.patient_ids, val)
    images, truth, ids = arrays.images[sel], arrays.masks[sel], arrays.patient_ids[sel]
    assert set(ids) == set(val), f"{folder}: some held-out patients have no slices here"
    engine = load_engine(folder, torch.device("cpu"), models=("segmentation",))
    _, cfg = load_segmentation(folder)
    out: dict[str, Any] = {"fold": card["split"]["fold"], "folds": card["split"]["folds"], "weights": str(folder),
                           "version": card.get("version"), "held_out": sorted(val), "engine": engine.name,
                           "config_flip_tta": cfg.flip_tta}
    for name, flip in (("flip_on", True), ("flip_off", False)):
        started = time.monotonic()
        score = score_segmentation(engine, dataclasses.replace(cfg, flip_tta=flip), images, truth, ids)
        m = score.evaluation.metrics
        out[name] = {"per_patient_dice": score.evaluation.per_patient,
                     "per_volume_dice_mean": m["per_volume_dice_mean"].value,
                     "tumour_slice_dice": {"value": m["tumour_slice_dice"].value, "n": m["tumour_slice_dice"].n},
                     "tumour_slice_dice_by_area": score.by_area, "seconds": time.monotonic() - started}
    return out


def pool(folds: list[dict[str, Any]]) -> dict[str, Any]:
    pooled: dict[str, Any] = {}
    for name in ("flip_on", "flip_off"):
        per_patient = {p: d for f in folds for p, d in f[name]["per_patient_dice"].items()}
        values = list(per_patient.values())
        n = sum(f[name]["tumour_slice_dice"]["n"] for f in folds)
        tumour = sum(f[name]["tumour_slice_dice"]["value"] * f[name]["tumour_slice_dice"]["n"] for f in folds) / n
        pooled[name] = {"patients": len(values), "per_volume_dice_mean": float(np.mean(values)),
                        "per_volume_dice_ci95": list(mean_ci(values)), "per_volume_dice_median": float(np.median(values)),
                        "tumour_slice_dice": tumour, "tumour_slices": n,
                        "tumour_slice_dice_by_area": pool_area_bins([f[name]["tumour_slice_dice_by_area"] for f in folds]),
                        "seconds": sum(f[name]["seconds"] for f in folds)}
    on, off = pooled["flip_on"], pooled["flip_off"]
    gain_volume = on["per_volume_dice_mean"] - off["per_volume_dice_mean"]
    gain_slice = on["tumour_slice_dice"] - off["tumour_slice_dice"]
    drop = gain_volume < PER_VOLUME_MIN_GAIN and gain_slice < TUMOUR_SLICE_MIN_GAIN
    pooled["gain"] = {"per_volume_dice": gain_volume, "tumour_slice_dice": gain_slice,
                      "per_volume_dice_per_patient_min_max": [
                          min(on_d - folds_off for on_d, folds_off in _pairs(folds)),
                          max(on_d - folds_off for on_d, folds_off in _pairs(folds))]}
    pooled["rule"] = (f"drop the flip if it gains < {PER_VOLUME_MIN_GAIN} pooled per-volume Dice AND < "
                      f"{TUMOUR_SLICE_MIN_GAIN} pooled tumour-slice Dice (selection-rule.txt, 2026-12-07)")
    pooled["decision"] = "drop the flip (flip_tta = false)" if drop else "keep the flip (flip_tta = true)"
    return pooled


def _pairs(folds: list[dict[str, Any]]) -> list[tuple[float, float]]:
    return [(f["flip_on"]["per_patient_dice"][p], f["flip_off"]["per_patient_dice"][p])
            for f in folds for p in f["flip_on"]["per_patient_dice"]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--folds", type=Path, required=True, help="folder holding C1-f{I}-refine")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    work = args.out / "flip-tta-oof-folds"
    arrays = None
    done = []
    for i in range(K):
        mine = work / f"fold-{i}.json"
        folder = args.folds / f"C1-f{i}-refine"
        if not mine.is_file() and (folder / "model_card.json").is_file():
            arrays = arrays if arrays is not None else slice_arrays(scan_dataset(args.data), 256)
            result = score_fold(folder, arrays)
            atomic_write_bytes(mine, (json.dumps(result, indent=1) + "\n").encode())
            print(f"fold {i}: on {result['flip_on']['per_volume_dice_mean']:.4f} "
                  f"off {result['flip_off']['per_volume_dice_mean']:.4f}", flush=True)
        if mine.is_file():
            done.append(json.loads(mine.read_text()))
    if not done:
        print("no fold model yet")
        return
    everyone = set().union(*(set(f["held_out"]) for f in done))
    assert sum(len(f["held_out"]) for f in done) == len(everyone), "held-out folds overlap"
    result = {"method": "each C1 fold model (--fold I/3 --seed 0) scores only its held-out patients with "
                        "lggdemo.evaluation.scoring.score_segmentation (the app's whole-patient masks), flip on and "
                        "off; pooled over folds (mean per-volume Dice over patients, tumour-slice Dice over all "
                        "tumour slices)",
              "folds_scored": [f["fold"] for f in done], "complete": len(done) == K,
              **pool(done), "per_fold": [{k: f[k] for k in ("fold", "version", "engine", "weights")} | {
                  n: {k: f[n][k] for k in ("per_volume_dice_mean", "tumour_slice_dice", "seconds")}
                  for n in ("flip_on", "flip_off")} for f in done]}
    if not result["complete"]:
        result["decision"] = f"none yet: {len(done)} of {K} folds scored (partial figures decide nothing)"
    atomic_write_bytes(args.out / "flip-tta-oof.json", (json.dumps(result, indent=1) + "\n").encode())
    print(json.dumps({k: result[k] for k in ("folds_scored", "gain", "decision")}, indent=1))


if __name__ == "__main__":
    main()
