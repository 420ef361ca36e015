"""Cross-validated estimate of a segmentation recipe, pooled from k fold runs of the trainer.

``python -m lggdemo.crossval FOLD_DIR... [--record-in WEIGHTS] [--json FILE]``

One 15-patient validation split is a small sample: the same recipe scored 0.861 per-volume Dice on
one seed's split and 0.775 on another's. Training the recipe once per fold
(``python -m lggdemo.train ... --fold I/K``) scores every patient exactly once, by the fold model
that never saw it, so the pooled number rests on all patients. It estimates the *recipe*; the
shipped model is one more run of it on its own split, which is why ``--record-in`` refuses weights
trained by a different recipe.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lggdemo.metrics.bootstrap import mean_ci
from lggdemo.metrics.definitions import DEFINITIONS, Metric
from lggdemo.models.card import ModelCard
from lggdemo.models.postprocess import LEGACY_RULE_TEXT
from lggdemo.models.weights import WeightsError, load_card, read_card, write_card

# What makes two U-Net trainings the same recipe; paths, seeds, split and thread counts do not.
RECIPE_KEYS = ("preset", "encoder", "image_size", "seg_epochs", "seg_samples", "batch_size", "lr", "slice_dice",
               "min_component_px", "flip_tta", "precision", "small_tumour_boost")
_DEFAULTS = {"slice_dice": False, "precision": "auto", "small_tumour_boost": 1}  # keys that older cards predate


class CrossValError(ValueError):
    """Fold runs that do not add up to one cross-validation; the message says which and why."""


def _card(card: ModelCard | dict[str, Any]) -> ModelCard:
    return card if isinstance(card, ModelCard) else ModelCard.from_dict(card)


def seg_recipe(card: ModelCard | dict[str, Any]) -> list[dict[str, Any]]:
    """The training stages behind a card's U-Net, first stage first (``--init-from`` chains them)."""
    card = _card(card)
    seg = card.segmentation
    if not seg.trained_in_this_run:
        raise CrossValError("its U-Net was copied from another run, so its card does not record how it was trained")

    def stage(train_config: dict[str, Any]) -> dict[str, Any]:
        return {k: train_config.get(k, _DEFAULTS.get(k)) for k in RECIPE_KEYS}

    stages = [stage(card.train_config)]
    parent = seg.initialised_from
    while parent:
        stages.insert(0, stage(parent.get("train_config") or {}))
        parent = parent.get("initialised_from")
    return stages


def scoring_rule(card: ModelCard | dict[str, Any]) -> str:
    """The post-processing a card's held-out masks were scored with, in words.

    Cards written since the whole-patient rule record it (``segmentation.postprocess``); older ones were
    scored with the 2D rule alone. Folds scored under different rules are not one estimate.
    """
    seg = _card(card).segmentation
    rule = seg.data.get("postprocess")
    if isinstance(rule, str) and rule:
        return rule
    return LEGACY_RULE_TEXT.format(min_px=int(seg.config.get("min_component_px", 0) or 0))


def pool_folds(cards: Sequence[ModelCard | dict[str, Any]], names: Sequence[str] | None = None) -> dict[str, Any]:
    """Pool fold runs into per-patient estimates over every patient, refusing anything that is not
    one clean k-fold partition of one recipe (a leak or a mixed recipe would make the number a lie)."""
    names = list(names or [f"run {i + 1}" for i in range(len(cards))])
    folds: dict[int, dict[str, Any]] = {}
    ks, seeds, recipes, rules = set(), set(), [], set()
    for name, card in zip(names, map(_card, cards)):
        split = card.split
        if split.fold is None or split.folds is None:
            raise CrossValError(f"{name} was not trained with --fold I/K: it holds out a fraction, not a fold")
        try:
            recipes.append(seg_recipe(card))
        except CrossValError as exc:
            raise CrossValError(f"{name}: {exc}") from None
        rules.add(scoring_rule(card))
        ks.add(split.folds)
        seeds.add(split.seed)
        if split.fold in folds:
            raise CrossValError(f"{name} repeats fold {split.fold}")
        train, val = set(split.train), set(split.val)
        scored = card.segmentation.per_patient_dice
        tumour = card.segmentation.metrics.get("tumour_slice_dice")
        if not scored or tumour is None:
            raise CrossValError(f"{name} has no held-out segmentation numbers")
        if train & val or not set(scored) <= val:
            raise CrossValError(f"{name} scored patients outside its held-out fold")
        folds[split.fold] = {"fold": split.fold, "run": name, "version": card.version,
                                "train": sorted(train), "val": sorted(val), "per_patient_dice": scored,
                                "tumour_slice_dice": {"value": tumour["value"], "n": tumour["n"]},
                                "training_seconds": card.segmentation.training_seconds}
    if len(ks) != 1 or len(seeds) != 1:
        raise CrossValError(f"the runs come from different partitions (folds {sorted(ks)}, seeds {sorted(seeds)})")
    k = ks.pop()
    if sorted(folds) != list(range(k)):
        missing = sorted(set(range(k)) - set(folds))
        raise CrossValError(f"{k}-fold cross-validation needs every fold; missing fold(s) {missing}")
    if any(r != recipes[0] for r in recipes):
        raise CrossValError("the runs were trained with different recipes")
    if len(rules) != 1:
        raise CrossValError(f"the folds were scored with different post-processing ({sorted(rules)}); "
                            "re-run the older folds' validation before pooling them")
    everyone = set(folds[0]["train"]) | set(folds[0]["val"])
    vals = [set(f["val"]) for f in folds.values()]
    if sum(len(v) for v in vals) != len(set().union(*vals)) or set().union(*vals) != everyone:
        raise CrossValError("the held-out folds do not partition the patients exactly once")

    per_patient = {p: d for f in folds.values() for p, d in f["per_patient_dice"].items()}
    values = list(per_patient.values())
    n_slices = sum(f["tumour_slice_dice"]["n"] for f in folds.values())
    slice_dice = sum(f["tumour_slice_dice"]["value"] * f["tumour_slice_dice"]["n"] for f in folds.values()) / n_slices
    metrics = {
        "per_volume_dice_mean": Metric(float(np.mean(values)), mean_ci(values), len(values),
                                       DEFINITIONS["per_volume_dice_mean"]),
        "per_volume_dice_median": Metric(float(np.median(values)), None, len(values), DEFINITIONS["per_volume_dice_median"]),
        "tumour_slice_dice": Metric(float(slice_dice), None, n_slices, DEFINITIONS["tumour_slice_dice"]),
    }
    return {"method": f"{k}-fold patient-level cross-validation (seed {seeds.pop()}): each patient scored once, "
                      "by the fold model that never trained on it; tumour-slice Dice pooled over all tumour slices",
            "recipe": recipes[0], "postprocess": rules.pop(), "metrics": {n: m.to_dict() for n, m in metrics.items()},
            "folds": [folds[i] for i in range(k)]}


def record(weights: Path, pooled: dict[str, Any]) -> None:
    """Add the estimate to a weights folder's card, only if its U-Net was trained by the same recipe."""
    card = read_card(weights)
    try:
        recipe = seg_recipe(card)
    except CrossValError as exc:
        raise CrossValError(f"{weights}: {exc}") from None
    if recipe != pooled["recipe"]:
        raise CrossValError(f"the U-Net in {weights} was trained by another recipe ({recipe}) than the folds "
                            f"({pooled['recipe']}); their estimate says nothing about it")
    card["segmentation"]["cross_validation"] = pooled
    write_card(weights, card)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lggdemo.crossval", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folds", nargs="+", help="weights folders written by `python -m lggdemo.train --fold I/K`")
    ap.add_argument("--record-in", default=None, help="weights folder whose card gets the estimate (same recipe only)")
    ap.add_argument("--json", default=None, help="also write the pooled estimate as JSON here")
    args = ap.parse_args(argv)
    try:
        pooled = pool_folds([load_card(Path(d)) for d in args.folds], args.folds)
        if args.record_in:
            record(Path(args.record_in), pooled)
    except (CrossValError, WeightsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(pooled["method"])
    print(f"post-processing: {pooled['postprocess']}")
    print("recipe: " + " -> ".join(s["preset"] for s in pooled["recipe"]))
    for name, m in pooled["metrics"].items():
        ci = f"  (95% CI {m['ci95'][0]:.3f}–{m['ci95'][1]:.3f})" if m["ci95"] else ""
        print(f"{name}: {m['value']:.3f}{ci}  n={m['n']}")
    for f in pooled["folds"]:
        print(f"fold {f['fold']}: {len(f['val'])} held out, per-volume Dice "
              f"{np.mean(list(f['per_patient_dice'].values())):.3f}, tumour-slice {f['tumour_slice_dice']['value']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(pooled, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
