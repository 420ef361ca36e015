"""Cross-validated estimate of a segmentation recipe, pooled from k fold runs of the trainer (its command line:
``lggdemo-crossval``, :mod:`lggdemo.crossval`).

One 15-patient validation split is a small sample: the same recipe scored 0.861 per-volume Dice on
one seed's split and 0.775 on another's. Training the recipe once per fold
(``python -m lggdemo.train ... --fold I/K``) scores every patient exactly once, by the fold model
that never saw it, so the pooled number rests on all patients. It estimates the *recipe*; the
shipped model is one more run of it on its own split, which is why ``--record-in`` refuses weights
trained by a different recipe.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lggdemo.metrics.segmentation import segmentation_metrics
from lggdemo.models.card import ModelCard
from lggdemo.models.postprocess import LEGACY_RULE_TEXT
from lggdemo.models.weights import load_card, write_card

# What makes two U-Net trainings the same recipe; paths, seeds, split and thread counts do not. "preset" is
# kept as the stage's label but not compared: a recipe is its values, whichever preset or command set them. The
# test-time flip is not among them: it changes no weight, only how masks are drawn, and its effect on the estimate
# was measured apart (docs/experiments/flip-tta-oof.md: -0.0001 per-volume Dice out of fold).
RECIPE_KEYS = ("preset", "encoder", "image_size", "seg_epochs", "seg_samples", "batch_size", "lr", "slice_dice",
               "min_component_px", "precision", "small_tumour_boost")
_DEFAULTS = {"slice_dice": False, "precision": "auto", "small_tumour_boost": 1}  # keys that older cards predate
#: Precisions that differ only in the rounding of the convolutions (autocast), not in data, epochs, schedule or loss.
ROUNDING_ONLY = frozenset({"fp32", "bf16"})
#: The decision of issue 27, in the card and weights/README.md: an fp32 run of a recipe whose folds trained in bf16
#: (or the other way round) may carry their cross-validated estimate, labelled as such.
PRECISION_CAVEAT = ("estimated with {folds} fold models; these weights trained the same recipe (same data, epochs, "
                    "schedule and loss) in {weights}. Autocast changes only the rounding of the convolutions; how "
                    "much that moves the Dice was not measured here.")


class CrossValError(ValueError):
    """Fold runs that do not add up to one cross-validation; the message says which and why."""


def as_card(card: ModelCard | dict[str, Any]) -> ModelCard:
    return card if isinstance(card, ModelCard) else ModelCard.from_dict(card)


def precision_used(train_config: dict[str, Any], recorded: Any = None, device: str | None = None) -> str:
    """The precision a training stage ran in (``fp32``, ``bf16``, ``fp16``): what recipes compare.

    ``recorded``: the run's own record (the card's ``precision.used``, a lineage's ``precision_used``), written
    since issue 27. Older records name only what was asked: ``bf16`` / ``fp32`` as such, and ``auto``, which then
    meant float32 everywhere but CUDA (``device``: the card's device line); an ``auto`` on CUDA stays ``auto``.
    """
    if isinstance(recorded, str) and recorded:
        return recorded
    asked = str(train_config.get("precision") or _DEFAULTS["precision"])
    if asked != "auto":
        return asked
    return "auto" if (device or "").upper().startswith("CUDA") else "fp32"


def run_precision(card: ModelCard | dict[str, Any]) -> str | None:
    """The precision a card's own run recorded it used (``precision.used``); ``None`` on cards that predate it."""
    entry = as_card(card).data.get("precision")
    used = entry.get("used") if isinstance(entry, dict) else None
    return used if isinstance(used, str) else None


def seg_recipe(card: ModelCard | dict[str, Any]) -> list[dict[str, Any]]:
    """The training stages behind a card's U-Net, first stage first.

    Stages chain through ``segmentation.initialised_from``: written by ``--init-from`` (another run's folder)
    and by a run that trains both stages itself (``refine_epochs``, the ``bundled`` preset). Such a run
    records its last stage's settings as ``segmentation.train_config``; otherwise the card's own are the last.
    A stage's ``precision`` is the one it *used* (:func:`precision_used`): ``--precision auto`` on a CPU with
    native bf16 is the same recipe as an explicit ``bf16``.
    """
    card = as_card(card)
    seg = card.segmentation
    if not seg.trained_in_this_run:
        raise CrossValError("its U-Net was copied from another run, so its card does not record how it was trained")

    def stage(train_config: dict[str, Any], recorded: Any) -> dict[str, Any]:
        values = {k: train_config.get(k, _DEFAULTS.get(k)) for k in RECIPE_KEYS}
        return {**values, "precision": precision_used(train_config, recorded, card.device)}

    last = seg.data.get("train_config")
    stages = [stage(last if isinstance(last, dict) else card.train_config, run_precision(card))]
    parent = seg.initialised_from
    while parent:
        stages.insert(0, stage(parent.get("train_config") or {}, parent.get("precision_used")))
        parent = parent.get("initialised_from")
    return stages


def _values(chain: Sequence[dict[str, Any]], skip: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    return [{k: s.get(k, _DEFAULTS.get(k)) for k in RECIPE_KEYS if k != "preset" and k not in skip} for s in chain]


def same_recipe(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]]) -> bool:
    """Whether two :func:`seg_recipe` chains train the same way: every stage's values equal, its preset name aside
    (``--preset bundled`` in one run is the same recipe as ``--preset full`` then ``--preset refine --init-from``
    with the same values). A key an older record lacks counts as its default, as :func:`seg_recipe` reads it."""
    return _values(a) == _values(b)


def precision_caveat(weights: Sequence[dict[str, Any]], folds: Sequence[dict[str, Any]]) -> str | None:
    """The caveat under which weights may carry the folds' estimate when the two differ only in precision.

    ``None`` when the recipes are the same. Raises :class:`CrossValError` when they differ in anything but a
    precision in :data:`ROUNDING_ONLY` (epochs, size, samples, loss... make it another recipe).
    """
    if same_recipe(weights, folds):
        return None
    if _values(weights, ("precision",)) != _values(folds, ("precision",)):
        raise CrossValError("another recipe")
    ours = {str(s.get("precision")) for s in weights}
    theirs = {str(s.get("precision")) for s in folds}
    if len(ours) != 1 or len(theirs) != 1 or not (ours | theirs) <= ROUNDING_ONLY:
        raise CrossValError("another precision")
    return PRECISION_CAVEAT.format(folds=theirs.pop(), weights=ours.pop())


def stage_timing(card: ModelCard | dict[str, Any]) -> list[dict[str, Any]]:
    """Each U-Net stage's training time and throughput, first stage first (the card's, or its lineage's).

    Stage cards written before the lineage kept ``images_per_second`` get it from their config: ``epochs``
    x whole batches of ``samples`` images, over the seconds (one process; torchrun cards record their own).
    """
    card = as_card(card)
    seg = card.segmentation
    last = seg.data.get("train_config") if isinstance(seg.data.get("train_config"), dict) else card.train_config
    entries = [(last, seg.data)]
    parent = seg.initialised_from
    while parent:
        entries.insert(0, (parent.get("train_config") or {}, parent))
        parent = parent.get("initialised_from")
    out = []
    for cfg, data in entries:
        seconds, rate = data.get("training_seconds"), data.get("images_per_second")
        if not isinstance(rate, (int, float)) and isinstance(seconds, (int, float)) and seconds > 0:
            try:
                batch = int(cfg["batch_size"])
                rate = int(cfg["seg_epochs"]) * (int(cfg["seg_samples"]) // batch) * batch / seconds
            except (KeyError, TypeError, ValueError):
                rate = None
        out.append({"preset": cfg.get("preset"), "epochs": cfg.get("seg_epochs"),
                    "unet_seconds": seconds if isinstance(seconds, (int, float)) else None,
                    "images_per_second": rate if isinstance(rate, (int, float)) else None})
    return out


def pool_area_bins(bins: Sequence[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Tumour-slice Dice by true tumour area, pooled over folds: each bin's Dice weighted by its slice count.

    Bins are named ``"lo-hi px"`` / ``">=lo px"`` (``metrics.segmentation.tumour_slice_dice_by_area``); a
    bin no slice of a fold fell into is simply absent from that fold. Returned smallest first.
    """
    pooled: dict[str, list[float]] = {}
    for fold in bins:
        for name, b in fold.items():
            acc = pooled.setdefault(name, [0, 0.0])
            acc[0] += int(b["n"])
            acc[1] += float(b["dice"]) * int(b["n"])
    ordered = sorted(pooled.items(), key=lambda kv: int(m.group()) if (m := re.search(r"\d+", kv[0])) else 0)
    return {name: {"n": int(n), "dice": total / n} for name, (n, total) in ordered if n}


def scoring_rule(card: ModelCard | dict[str, Any]) -> str:
    """The post-processing a card's held-out masks were scored with, in words.

    Cards written since the whole-patient rule record it (``segmentation.postprocess``); older ones were
    scored with the 2D rule alone. Folds scored under different rules are not one estimate.
    """
    seg = as_card(card).segmentation
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
    for name, card in zip(names, map(as_card, cards)):
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
        stages = stage_timing(card)
        times = [s["unet_seconds"] for s in stages]
        folds[split.fold] = {"fold": split.fold, "run": name, "version": card.version,
                             "train": sorted(train), "val": sorted(val), "per_patient_dice": scored,
                             "tumour_slice_dice": {"value": tumour["value"], "n": tumour["n"]},
                             "tumour_slice_dice_by_area": card.segmentation.data.get("tumour_slice_dice_by_area"),
                             "training_seconds": card.segmentation.training_seconds, "stages": stages,
                             "unet_seconds": sum(times) if None not in times else None,
                             "run_seconds": card.data.get("training_seconds")}
    if len(ks) != 1 or len(seeds) != 1:
        raise CrossValError(f"the runs come from different partitions (folds {sorted(ks)}, seeds {sorted(seeds)})")
    k = ks.pop()
    if sorted(folds) != list(range(k)):
        missing = sorted(set(range(k)) - set(folds))
        raise CrossValError(f"{k}-fold cross-validation needs every fold; missing fold(s) {missing}")
    if any(not same_recipe(r, recipes[0]) for r in recipes):
        raise CrossValError("the runs were trained with different recipes")
    if len(rules) != 1:
        raise CrossValError(f"the folds were scored with different post-processing ({sorted(rules)}); "
                            "re-run the older folds' validation before pooling them")
    everyone = set(folds[0]["train"]) | set(folds[0]["val"])
    vals = [set(f["val"]) for f in folds.values()]
    if sum(len(v) for v in vals) != len(set().union(*vals)) or set().union(*vals) != everyone:
        raise CrossValError("the held-out folds do not partition the patients exactly once")

    per_patient = {p: d for f in folds.values() for p, d in f["per_patient_dice"].items()}
    n_slices = sum(f["tumour_slice_dice"]["n"] for f in folds.values())
    slice_dice = sum(f["tumour_slice_dice"]["value"] * f["tumour_slice_dice"]["n"] for f in folds.values()) / n_slices
    metrics = segmentation_metrics(per_patient, slice_dice, n_slices)
    bins = [folds[i]["tumour_slice_dice_by_area"] for i in range(k)]
    by_area = pool_area_bins(bins) if all(isinstance(b, dict) and b for b in bins) else None
    unet = [folds[i]["unet_seconds"] for i in range(k)]
    return {"method": f"{k}-fold patient-level cross-validation (seed {seeds.pop()}): each patient scored once, "
                      "by the fold model that never trained on it; tumour-slice Dice pooled over all tumour slices",
            "recipe": recipes[0], "postprocess": rules.pop(), "metrics": {n: m.to_dict() for n, m in metrics.items()},
            "tumour_slice_dice_by_area": by_area,
            "timing": {"unet_seconds_per_fold": unet,
                       "unet_seconds_mean": float(np.mean(unet)) if None not in unet else None,
                       "images_per_second_by_stage": _mean_rates(folds[i]["stages"] for i in range(k))},
            "folds": [folds[i] for i in range(k)]}


def _mean_rates(fold_stages: Any) -> list[float | None]:
    """Each stage's mean training throughput over the folds (None where a fold lacks it)."""
    columns = list(zip(*fold_stages))
    return [float(np.mean(r)) if None not in (r := [s["images_per_second"] for s in col]) else None for col in columns]


def record(weights: Path, pooled: dict[str, Any]) -> None:
    """Add the estimate to a weights folder's card, only if its U-Net was trained by the same recipe.

    One difference is allowed, under a written caveat (``cross_validation.precision_note``): the precision, fp32
    against the folds' bf16 or the reverse (:func:`precision_caveat`; issue 27's decision, weights/README.md).
    """
    card = load_card(weights)
    try:
        recipe = seg_recipe(card)
    except CrossValError as exc:
        raise CrossValError(f"{weights}: {exc}") from None
    try:
        caveat = precision_caveat(recipe, pooled["recipe"])
    except CrossValError:
        raise CrossValError(f"the U-Net in {weights} was trained by another recipe ({recipe}) than the folds "
                            f"({pooled['recipe']}); their estimate says nothing about it") from None
    estimate = {**pooled, **({"precision_note": caveat} if caveat else {})}
    write_card(weights, card.with_model("segmentation", card.segmentation.updated(cross_validation=estimate)))
