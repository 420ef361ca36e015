"""The trainer on the synthetic set: split rules, leakage guard, outputs, cancellation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tiny_runs import tiny_config

from lggdemo.data.kaggle import scan_dataset
from lggdemo.inference.grade import base_rate_g3
from lggdemo.models.networks import GradeConfig, build_grade
from lggdemo.models.postprocess import patient_rule_text
from lggdemo.models.weights import GRADE_FILE, SEG_FILE, is_complete, load_grade, load_segmentation, read_card, sha256_file
from lggdemo.train import TrainConfig, TrainError, augment, fold_split, kfold, patient_split, run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_run(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny quick run (both models, 2-fold CV) shared by the tests that only read its output.

    A real training run, unlike the conftest's ``tiny_weights`` (untrained models and a written card): the tests
    that use it are ``slow``."""
    out = tmp_path_factory.mktemp("tiny-weights")
    events: list[dict] = []
    run(tiny_config(synthetic_root, out, folds=2), [events.append])
    (out / "events.json").write_text(json.dumps(events))
    return out


def test_split_is_by_patient_stratified_and_seeded(synthetic_root: Path) -> None:
    index = scan_dataset(synthetic_root)
    split = patient_split(index, 0.25, seed=3)
    assert not set(split.train) & set(split.val)
    assert set(split.train) | set(split.val) == set(index.patient_ids)
    grades = {index.clinical_for(p).grade for p in split.val}
    assert {"G2", "G3"} <= grades  # each grade is represented on the validation side
    assert patient_split(index, 0.25, seed=3) == split
    assert patient_split(index, 0.25, seed=4) != split


def test_split_refuses_too_few_patients(synthetic_copy: Path) -> None:
    import shutil

    for folder in sorted(p for p in synthetic_copy.iterdir() if p.is_dir())[3:]:
        shutil.rmtree(folder)
    with pytest.raises(TrainError, match="at least 4"):
        patient_split(scan_dataset(synthetic_copy), 0.2, 0)


def test_fold_split_holds_out_each_patient_in_exactly_one_fold(synthetic_root: Path) -> None:
    index = scan_dataset(synthetic_root)
    splits = [fold_split(index, i, 3, seed=0) for i in range(3)]
    held = [p for s in splits for p in s.val]
    assert sorted(held) == sorted(index.patient_ids)  # a partition: every patient held out once
    for s in splits:
        assert set(s.train) | set(s.val) == set(index.patient_ids) and not set(s.train) & set(s.val)
        assert {"G2", "G3"} <= {index.clinical_for(p).grade for p in s.val}  # stratified by grade
    assert fold_split(index, 1, 3, seed=0) == splits[1]
    assert [fold_split(index, i, 3, seed=1).val for i in range(3)] != [s.val for s in splits]
    with pytest.raises(TrainError, match="7 folds need at least 14"):  # 12 phantoms: folds of one patient are no estimate
        fold_split(index, 0, 7, seed=0)


def test_kfold_covers_every_patient_once() -> None:
    patients = [f"p{i}" for i in range(10)]
    labels = [i % 2 for i in range(10)]
    folds = kfold(patients, labels, 3, seed=0)
    held = [p for _, te in folds for p in te]
    assert sorted(held) == sorted(patients)
    for tr, te in folds:
        assert not set(tr) & set(te)


@pytest.mark.parametrize("features", [("age_z", "neoplasm_histologic_grade"), ("death01",), ("histological_type",)])
def test_leaky_clinical_inputs_are_refused(features: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="leak"):
        build_grade(GradeConfig(clinical_features=features))


@pytest.mark.parametrize(
    "kw, message",
    [({"seg_epochs": 0}, "at least 1"), ({"image_size": 100}, "multiple of 32"), ({"device": "cuda"}, "CUDA")],
)
def test_impossible_settings_are_refused(synthetic_root: Path, tmp_path: Path, kw: dict, message: str) -> None:
    if kw.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(TrainError, match=message):
        run(tiny_config(synthetic_root, tmp_path / "out", **kw))
    assert not (tmp_path / "out").exists()


def test_augment_moves_image_and_mask_together() -> None:
    gen = torch.Generator().manual_seed(0)
    mask = torch.zeros(4, 1, 32, 32)
    mask[:, :, 8:20, 5:14] = 1
    image = mask.repeat(1, 3, 1, 1)
    x, y = augment(image, mask, gen)
    assert y is not None and y.shape == mask.shape
    assert not torch.equal(y, mask)  # something moved
    # The image's bright region still coincides with the moved mask.
    bright = (x[:, 1:2] > 0.5).float()
    inter = (bright * y).sum()
    assert float(2 * inter / (bright.sum() + y.sum())) > 0.8


@pytest.mark.slow  # a real (tiny) training run
def test_quick_run_writes_loadable_weights_and_card(tiny_run: Path, synthetic_root: Path) -> None:
    assert is_complete(tiny_run)
    seg, seg_cfg = load_segmentation(tiny_run)
    grade, grade_cfg = load_grade(tiny_run)
    assert seg(torch.zeros(1, 3, seg_cfg.image_size, seg_cfg.image_size)).shape[1] == 1
    card = read_card(tiny_run)
    assert set(card["split"]["train"]).isdisjoint(card["split"]["val"])
    index = scan_dataset(synthetic_root)
    assert set(card["split"]["train"]) | set(card["split"]["val"]) == set(index.patient_ids)
    assert set(card["segmentation"]["per_patient_dice"]) == set(card["split"]["val"])
    assert set(card["grade"]["per_patient_p_g3"]) <= set(card["split"]["val"])
    for metric in ("per_volume_dice_mean", "tumour_slice_dice"):
        assert 0.0 <= card["segmentation"]["metrics"][metric]["value"] <= 1.0
    assert "age_baseline_auc" in card["grade"]["metrics"]
    assert card["segmentation"]["postprocess"] == patient_rule_text(seg_cfg.min_component_px)  # the whole-patient rule
    grades = {p: index.clinical_for(p).grade for p in card["split"]["train"]}
    assert card["grade"]["base_rate_g3"]["value"] == pytest.approx(base_rate_g3(grades, card["split"]["train"]).value)
    assert set(card["grade"]["cross_validation"]["variants"]) == {"fusion", "clinical_only", "image_only"}
    assert card["data"]["n_patients"] == len(index.patient_ids)
    assert "not a medical device" in card["intended_use"].lower()
    for name in (SEG_FILE, GRADE_FILE):
        assert card["files"][name]["sha256"] == sha256_file(tiny_run / name)
    events = json.loads((tiny_run / "events.json").read_text())
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert {"step", "epoch"} <= set(kinds)


@pytest.mark.slow  # a real (tiny) training run
def test_single_task_run_completes_folder_from_source(tiny_run: Path, synthetic_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "seg-only"
    run(tiny_config(synthetic_root, out, task="seg", complete_from=str(tiny_run)))
    card = read_card(out)
    assert card["segmentation"]["trained_in_this_run"] is True
    assert card["grade"]["trained_in_this_run"] is False
    assert sha256_file(out / GRADE_FILE) == sha256_file(tiny_run / GRADE_FILE)
    assert is_complete(out)


@pytest.mark.slow  # a real (tiny) training run
def test_refine_continues_the_parent_unet_and_remeasures_the_copied_grade_model(tiny_run: Path, synthetic_root: Path,
                                                                               tmp_path: Path) -> None:
    out = tmp_path / "refined"
    run(tiny_config(synthetic_root, out, task="seg", init_from=str(tiny_run), image_size=64, seg_epochs=1, lr=1e-9,
                    slice_dice=True))
    card, parent = read_card(out), read_card(tiny_run)
    lineage = card["segmentation"]["initialised_from"]
    assert lineage["sha256"] == parent["files"][SEG_FILE]["sha256"]
    assert lineage["train_config"]["image_size"] == 32 and card["segmentation"]["config"]["image_size"] == 64
    # At a negligible learning rate the continued U-Net still holds the parent's weights (not a fresh init).
    # Batch-norm running statistics move with the data, so only the learnt tensors are compared.
    old, new = load_segmentation(tiny_run)[0].state_dict(), load_segmentation(out)[0].state_dict()
    learnt = [k for k in old if "running" not in k and "num_batches" not in k]
    assert all(torch.allclose(old[k], new[k], atol=1e-4) for k in learnt)
    # The grade model is copied byte for byte, but its held-out numbers use this run's masks.
    assert sha256_file(out / GRADE_FILE) == sha256_file(tiny_run / GRADE_FILE)
    assert card["grade"]["trained_in_this_run"] is False
    assert card["grade"]["validation_masks"] == "predicted by this run's segmentation model"
    assert card["grade"]["config"] == parent["grade"]["config"]
    assert set(card["grade"]["per_patient_p_g3"]) <= set(card["split"]["val"])


@pytest.mark.slow  # a real (tiny) training run
def test_model_copied_from_another_split_carries_no_held_out_numbers(tiny_run: Path, synthetic_root: Path,
                                                                      tmp_path: Path) -> None:
    out = tmp_path / "other-split"
    run(tiny_config(synthetic_root, out, task="seg", complete_from=str(tiny_run), seed=1))
    card, source = read_card(out), read_card(tiny_run)
    assert card["split"]["train"] != source["split"]["train"]
    assert sha256_file(out / GRADE_FILE) == sha256_file(tiny_run / GRADE_FILE)
    assert "metrics" not in card["grade"] and "per_patient_p_g3" not in card["grade"]
    assert card["grade"]["held_out_metrics"].startswith("withheld")
    assert card["segmentation"]["metrics"]  # the model trained here is still scored
    # A later run on this split, copying from that folder, must not re-score the foreign model either.
    again = tmp_path / "again"
    run(tiny_config(synthetic_root, again, task="seg", complete_from=str(out), seed=1))
    assert "metrics" not in read_card(again)["grade"]


def test_slice_dice_loss_counts_each_tumour_slice_once() -> None:
    import segmentation_models_pytorch as smp

    from lggdemo.train import slice_dice_loss

    target = torch.zeros(2, 1, 32, 32)
    target[0, 0, :, :20] = 1  # a large tumour, found
    target[1, 0, :4, :4] = 1  # a small one, missed
    logits = torch.where(target > 0, 10.0, -10.0)
    logits[1] = -10.0
    batch = smp.losses.DiceLoss(mode="binary", from_logits=True)(logits, target)
    assert batch < 0.02  # pooled pixels hide the missed slice
    assert 0.45 < slice_dice_loss(logits, target) < 0.55  # one of two tumour slices missed
    empty = torch.zeros(2, 1, 8, 8)
    assert slice_dice_loss(torch.full_like(empty, 5.0), empty) == 0  # no tumour slice: no term


@pytest.mark.slow  # a real (tiny) training run
def test_epoch_validation_is_a_curve_only(synthetic_root: Path, tmp_path: Path) -> None:
    states = []
    for flag in (True, False):
        out = tmp_path / str(flag)
        run(tiny_config(synthetic_root, out, task="seg", seg_epochs=2, epoch_validation=flag))
        states.append(load_segmentation(out)[0].state_dict())
        assert bool(read_card(out)["segmentation"]["history"][0]["val"]) is flag
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


@pytest.mark.slow  # a real (tiny) training run
def test_refine_refuses_a_parent_trained_on_another_split(tiny_run: Path, synthetic_root: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="different patient split"):
        run(tiny_config(synthetic_root, tmp_path / "o", task="seg", init_from=str(tiny_run), seed=1))
    with pytest.raises(TrainError, match="--init-from"):
        TrainConfig.from_preset("refine", data=str(synthetic_root), out=str(tmp_path / "o")).validate()
    assert not (tmp_path / "o").exists()


@pytest.mark.slow  # a real (tiny) training run
def test_sigterm_mid_run_leaves_previous_weights_byte_identical(tiny_run: Path, synthetic_root: Path,
                                                                 tmp_path: Path) -> None:
    import shutil

    out = tmp_path / "weights"
    shutil.copytree(tiny_run, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    progress = tmp_path / "progress.jsonl"
    cmd = [sys.executable, "-m", "lggdemo.train", "--preset", "quick", "--data", str(synthetic_root), "--out", str(out),
           "--image-size", "32", "--grade-image-size", "32", "--samples-per-epoch", "4000", "--batch-size", "8",
           "--epochs", "1", "--encoder", "resnet18", "--threads", "1", "--progress-file", str(progress), "--no-bar"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if progress.exists() and '"event": "step"' in progress.read_text():
            break
        if proc.poll() is not None:
            pytest.fail(f"trainer exited early: {proc.stdout.read().decode()[-2000:]}")  # type: ignore[union-attr]
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("trainer never reached a training step")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    last = json.loads(progress.read_text().strip().splitlines()[-1])
    assert last["event"] == "cancelled"


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
def test_cli_rejects_impossible_settings_with_exit_2(synthetic_root: Path, tmp_path: Path) -> None:
    progress = tmp_path / "p.jsonl"
    res = subprocess.run([sys.executable, "-m", "lggdemo.train", "--data", str(synthetic_root), "--out",
                          str(tmp_path / "o"), "--epochs", "0", "--progress-file", str(progress), "--no-bar"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "at least 1" in res.stderr
    assert json.loads(progress.read_text().splitlines()[-1])["event"] == "error"


def test_bundled_preset_is_the_protocols_winner_on_every_patient() -> None:
    """The one-command recipe is the protocol's winner, C1 (selection-rule.txt, 2026-12-02; cv21/compare.json)."""
    cfg = TrainConfig.from_preset("bundled")
    assert cfg.problems() == []
    assert (cfg.precision, cfg.image_size, cfg.seg_epochs, cfg.refine_epochs, cfg.seg_samples, cfg.batch_size) == \
        ("auto", 128, 31, 13, 1200, 16)  # bf16 where the CPU has it natively (tests/train/test_precision.py)
    assert cfg.small_tumour_boost == 1
    assert (cfg.val_fraction, cfg.fold, cfg.task) == (0.0, None, "all")
    full = TrainConfig.from_preset("full")
    assert (cfg.grade_image_size, cfg.grade_epochs, cfg.grade_samples, cfg.lr) == \
        (full.grade_image_size, full.grade_epochs, full.grade_samples, full.lr)
    stage2 = cfg.refine_stage()
    refine = TrainConfig.from_preset("refine", init_from="x")
    assert (stage2.seg_epochs, stage2.lr, stage2.slice_dice, stage2.refine_epochs) == (13, refine.lr, True, 0)
    assert TrainConfig.from_preset("bundled", val_fraction=-0.1).problems() == [
        "Validation fraction must be at least 0 and below 0.9."]


@pytest.mark.slow  # a real (tiny) training run
def test_bundled_preset_config_quick_phantom_run(synthetic_root: Path, tmp_path: Path) -> None:
    """The bundled preset's own config (auto precision, two U-Net stages, grade, every patient) on the phantoms, with tiny
    sizes and epochs: one command writes a complete folder that the app and the evaluator take as it is."""
    from lggdemo.evaluate import main as evaluate
    from lggdemo.evaluation.crossval import seg_recipe
    from lggdemo.inference.examples import example_patients
    from lggdemo.inference.predictor import Predictor

    out = tmp_path / "bundled"
    events: list[dict] = []
    run(TrainConfig.from_preset("bundled", data=str(synthetic_root), out=str(out), image_size=32, grade_image_size=32,
                                seg_epochs=1, refine_epochs=1, grade_epochs=1, seg_samples=16, grade_samples=16,
                                batch_size=8, threads=1), [events.append])
    assert is_complete(out)
    card = read_card(out)
    index = scan_dataset(synthetic_root)
    assert card["split"]["train"] == sorted(index.patient_ids) and card["split"]["val"] == []
    assert card["train_config"]["precision"] == "auto" and card["train_config"]["preset"] == "bundled"
    used = card["precision"]["used"]
    stages = seg_recipe(card)
    assert [(s["seg_epochs"], s["lr"], s["slice_dice"], s["precision"]) for s in stages] == \
        [(1, 1e-3, False, used), (1, 3e-4, True, used)]
    seg, grade = card["segmentation"], card["grade"]
    assert seg["initialised_from"]["in_process"] and seg["initialised_from"]["images_per_second"] > 0
    assert seg["images_per_second"] > 0 and grade["trained_in_this_run"]
    for section in (seg, grade):  # no validation patients: no held-out numbers, and the card says why
        assert "cross-validation" in section["held_out_metrics"] and not section.get("metrics")
    assert grade["base_rate_g3"]["n"] == sum(index.clinical_for(p).grade is not None for p in index.patient_ids)
    fits = [(e["phase"], e["fit"], e["fits"]) for e in events if e["event"] == "epoch" and e["model"] == "segmentation"]
    assert fits == [("stage 1", 0, 2), ("refine", 1, 2)]
    predictor = Predictor.from_directory(out, "cpu")
    assert "records no AUC" in predictor.grade_verdict.sentence
    assert example_patients(index, card) == list(index.patient_ids)
    assert evaluate(["--data", str(synthetic_root), "--weights", str(out), "--split", "val"]) == 2
