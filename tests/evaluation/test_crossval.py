"""Cross-validating a recipe: fold runs of the real trainer pool into one estimate, and anything that is
not one clean partition of one recipe is refused rather than averaged."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_runs import tiny_config

from lggdemo.crossval import main
from lggdemo.data.arrays import slice_arrays
from lggdemo.data.kaggle import scan_dataset
from lggdemo.evaluation.crossval import CrossValError, pool_folds, record, same_recipe, seg_recipe
from lggdemo.metrics.segmentation import evaluate_segmentation
from lggdemo.models.forward import predict_patient_masks, segment_slices
from lggdemo.models.postprocess import patient_rule_text
from lggdemo.models.weights import load_segmentation, read_card
from lggdemo.train import run

SEG_ONLY = dict(task="seg", flip_tta=False)


@pytest.fixture(scope="module")
def fold_runs(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two tiny U-Net runs of the quick recipe, one per fold of a 2-fold partition of the phantoms."""
    base = tmp_path_factory.mktemp("cv")
    outs = []
    for i in range(2):
        out = base / f"fold{i}"
        run(tiny_config(synthetic_root, out, fold=(i, 2), **SEG_ONLY))
        outs.append(out)
    return outs


@pytest.mark.slow  # real (tiny) training runs
def test_pooled_estimate_scores_every_patient_once_with_its_own_fold_model(fold_runs: list[Path], tmp_path: Path) -> None:
    cards = [read_card(d) for d in fold_runs]
    assert main([str(d) for d in fold_runs] + ["--json", str(tmp_path / "cv.json")]) == 0
    pooled = json.loads((tmp_path / "cv.json").read_text())
    everyone = set(cards[0]["split"]["train"]) | set(cards[0]["split"]["val"])
    scored = [p for f in pooled["folds"] for p in f["per_patient_dice"]]
    assert sorted(scored) == sorted(everyone)
    for f in pooled["folds"]:
        assert not set(f["per_patient_dice"]) & set(f["train"])
    per_patient = [d for c in cards for d in c["segmentation"]["per_patient_dice"].values()]
    m = pooled["metrics"]
    assert m["per_volume_dice_mean"]["value"] == pytest.approx(np.mean(per_patient))
    assert m["per_volume_dice_mean"]["n"] == len(everyone)
    lo, hi = m["per_volume_dice_mean"]["ci95"]
    assert lo <= m["per_volume_dice_mean"]["value"] <= hi
    tumour = [c["segmentation"]["metrics"]["tumour_slice_dice"] for c in cards]
    assert m["tumour_slice_dice"]["n"] == sum(t["n"] for t in tumour)
    pooled_slices = sum(t["value"] * t["n"] for t in tumour) / sum(t["n"] for t in tumour)
    assert m["tumour_slice_dice"]["value"] == pytest.approx(pooled_slices)
    assert [s["preset"] for s in pooled["recipe"]] == ["quick"]
    rule = patient_rule_text(cards[0]["segmentation"]["config"]["min_component_px"])
    assert pooled["postprocess"] == rule and all(c["segmentation"]["postprocess"] == rule for c in cards)


@pytest.mark.slow  # real (tiny) training runs
def test_fold_scores_are_the_whole_patient_masks(fold_runs: list[Path], synthetic_root: Path) -> None:
    """The trainer's held-out Dice is the evaluator's patient-level path (2D rule + largest 3D component)."""
    arrays = slice_arrays(scan_dataset(synthetic_root), 256)
    for d in fold_runs:
        card = read_card(d)
        sel = np.isin(arrays.patient_ids, card["split"]["val"])
        model, cfg = load_segmentation(d, "cpu")
        pred = predict_patient_masks(model, cfg, arrays.images[sel], arrays.patient_ids[sel], torch.device("cpu"))
        ev = evaluate_segmentation(pred, arrays.masks[sel], arrays.patient_ids[sel])
        stored = card["segmentation"]["per_patient_dice"]
        assert ev.per_patient == pytest.approx(stored, abs=1e-3)  # the model on disk is float16, the trainer's float32
        two_d = evaluate_segmentation(segment_slices(model, cfg, arrays.images[sel], torch.device("cpu"))[0],
                                      arrays.masks[sel], arrays.patient_ids[sel])
        # the untrained model's specks move the Dice only a little: the card sits far closer to the 3D-rule scores
        off_3d = sum(abs(stored[p] - ev.per_patient[p]) for p in stored)
        off_2d = sum(abs(stored[p] - two_d.per_patient[p]) for p in stored)
        assert off_3d < 0.5 * off_2d, (off_3d, off_2d)


@pytest.mark.slow  # real (tiny) training runs
def test_incomplete_or_leaky_folds_are_refused(fold_runs: list[Path]) -> None:
    cards = [read_card(d) for d in fold_runs]
    with pytest.raises(CrossValError, match="missing fold"):
        pool_folds(cards[:1])
    with pytest.raises(CrossValError, match="repeats fold"):
        pool_folds([cards[0], cards[0]])
    leaky = copy.deepcopy(cards)
    leaky[0]["segmentation"]["per_patient_dice"][leaky[0]["split"]["train"][0]] = 1.0
    with pytest.raises(CrossValError, match="outside its held-out fold"):
        pool_folds(leaky)
    mixed = copy.deepcopy(cards)
    mixed[1]["train_config"]["lr"] = 0.5
    with pytest.raises(CrossValError, match="different recipes"):
        pool_folds(mixed)
    older = copy.deepcopy(cards)
    del older[0]["segmentation"]["postprocess"]  # a fold scored before the whole-patient rule existed
    with pytest.raises(CrossValError, match="different post-processing"):
        pool_folds(older)
    not_a_fold = copy.deepcopy(cards)
    del not_a_fold[1]["split"]["fold"]
    with pytest.raises(CrossValError, match="not trained with --fold"):
        pool_folds(not_a_fold)


def test_recipe_follows_the_init_from_chain() -> None:
    card = {"train_config": {"preset": "refine", "lr": 3e-4, "slice_dice": True},
            "segmentation": {"trained_in_this_run": True,
                             "initialised_from": {"train_config": {"preset": "full", "lr": 1e-3}, "initialised_from": None}}}
    stages = seg_recipe(card)
    assert [(s["preset"], s["lr"], s["slice_dice"]) for s in stages] == [("full", 1e-3, False), ("refine", 3e-4, True)]
    card["segmentation"]["trained_in_this_run"] = False
    with pytest.raises(CrossValError, match="copied"):
        seg_recipe(card)


@pytest.mark.slow  # real (tiny) training runs
def test_estimate_is_recorded_only_in_weights_of_the_same_recipe(fold_runs: list[Path], synthetic_root: Path,
                                                                 tmp_path: Path) -> None:
    pooled = pool_folds([read_card(d) for d in fold_runs])
    same = tmp_path / "same"
    run(tiny_config(synthetic_root, same, seed=5, **SEG_ONLY))
    record(same, pooled)
    assert read_card(same)["segmentation"]["cross_validation"]["metrics"] == pooled["metrics"]

    other = tmp_path / "other"
    run(tiny_config(synthetic_root, other, **{**SEG_ONLY, "seg_epochs": 2}))
    before = (other / "model_card.json").read_bytes()
    assert main([str(d) for d in fold_runs] + ["--record-in", str(other)]) == 2
    assert (other / "model_card.json").read_bytes() == before  # refused, and the card is untouched


@pytest.mark.slow  # real (tiny) training runs
def test_pooling_adds_area_bins_and_each_folds_time_and_throughput(fold_runs: list[Path]) -> None:
    cards = [read_card(d) for d in fold_runs]
    pooled = pool_folds(cards)
    bins = [c["segmentation"]["tumour_slice_dice_by_area"] for c in cards]
    for name, b in pooled["tumour_slice_dice_by_area"].items():
        parts = [f[name] for f in bins if name in f]
        assert b["n"] == sum(p["n"] for p in parts)
        assert b["dice"] == pytest.approx(sum(p["dice"] * p["n"] for p in parts) / b["n"])
    assert sum(b["n"] for b in pooled["tumour_slice_dice_by_area"].values()) == pooled["metrics"]["tumour_slice_dice"]["n"]
    for f, c in zip(pooled["folds"], cards):
        (stage,) = f["stages"]  # the quick recipe is one stage
        assert stage["unet_seconds"] == c["segmentation"]["training_seconds"] == f["unet_seconds"]
        assert stage["images_per_second"] == c["segmentation"]["images_per_second"]
        assert f["run_seconds"] == c["training_seconds"]
    assert pooled["timing"]["unet_seconds_per_fold"] == [f["unet_seconds"] for f in pooled["folds"]]


@pytest.mark.slow  # real (tiny) training runs
def test_card_files_pool_like_their_folders(fold_runs: list[Path], tmp_path: Path) -> None:
    """Fold cards kept as JSON files (docs/experiments/cv21/C1-f0.json) are read like weights folders."""
    files = []
    for i, d in enumerate(fold_runs):
        files.append(tmp_path / f"C9-f{i}.json")
        files[-1].write_text((d / "model_card.json").read_text())
    assert main([str(f) for f in files] + ["--name", "C9", "--json", str(tmp_path / "C9.json")]) == 0
    pooled = json.loads((tmp_path / "C9.json").read_text())
    assert pooled["candidate"] == "C9"
    assert pooled["metrics"] == pool_folds([read_card(d) for d in fold_runs])["metrics"]


def test_stage_times_of_an_older_two_stage_card_come_from_its_lineage() -> None:
    """Cards written before the lineage kept images/s (the protocol's runner) get it from the stage's config."""
    card = {"train_config": {"preset": "refine", "seg_epochs": 2, "seg_samples": 40, "batch_size": 16},
            "segmentation": {"trained_in_this_run": True, "training_seconds": 8.0, "images_per_second": 8.0,
                             "initialised_from": {"train_config": {"preset": "full", "seg_epochs": 3, "seg_samples": 40,
                                                                   "batch_size": 16}, "training_seconds": 12.0}}}
    from lggdemo.evaluation.crossval import stage_timing

    first, second = stage_timing(card)
    assert (first["preset"], first["unet_seconds"], first["images_per_second"]) == ("full", 12.0, 3 * 32 / 12.0)
    assert (second["preset"], second["images_per_second"]) == ("refine", 8.0)


@pytest.mark.slow  # real (tiny) training runs
def test_in_process_stages_are_the_same_recipe_as_the_init_from_chain(synthetic_root: Path, tmp_path: Path) -> None:
    """``refine_epochs`` (the bundled preset's two stages in one run) trains what ``--preset refine --init-from``
    trains after a first run: the same recipe to cross-validation, and the same U-Net, weight for weight."""
    common = dict(SEG_ONLY, fold=(0, 2), epoch_validation=False)
    first = tmp_path / "stage1"
    run(tiny_config(synthetic_root, first, **common))
    chained = tmp_path / "chain"
    run(tiny_config(synthetic_root, chained, "refine", init_from=str(first), **{**common, "folds": 4}))
    one_run = tmp_path / "one-run"
    run(tiny_config(synthetic_root, one_run, refine_epochs=1, **common))
    a, b = seg_recipe(read_card(chained)), seg_recipe(read_card(one_run))
    assert [s["preset"] for s in a] == ["quick", "refine"] and [s["preset"] for s in b] == ["quick", "quick"]
    assert [(s["lr"], s["slice_dice"]) for s in b] == [(1e-3, False), (3e-4, True)]
    assert same_recipe(a, b)
    assert not same_recipe(a, [a[0], {**a[1], "seg_epochs": 2}])
    x, y = load_segmentation(chained)[0].state_dict(), load_segmentation(one_run)[0].state_dict()
    assert all(torch.equal(x[k], y[k]) for k in x)
    assert read_card(chained)["segmentation"]["per_patient_dice"] == read_card(one_run)["segmentation"]["per_patient_dice"]
