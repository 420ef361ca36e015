"""Fine-tuning on corrections (``--corrections``): rules, the data the U-Net sees, the held-back validation
patients, and a phantom run whose card carries the before/after comparison."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_runs import tiny_config

from lggdemo import corrections as corr
from lggdemo.data.kaggle import load_image, load_mask, scan_dataset
from lggdemo.models.weights import is_complete, read_card
from lggdemo.train import TrainConfig, TrainError, run
from lggdemo.train.cli import build_parser, config_from_args
from lggdemo.train.finetune_data import fine_tune_problems, inherited_split, load_corrections
from lggdemo.train.split import Split


@pytest.fixture(scope="module")
def parent(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny complete weights folder trained on the phantoms: what a fine-tune continues."""
    out = tmp_path_factory.mktemp("parent")
    run(tiny_config(synthetic_root, out))
    return out


def correct(root: Path, dataset: Path, pid: str, number: int) -> corr.Correction:
    """Save a 'correction' of one dataset slice: its true mask with a square painted on."""
    index = scan_dataset(dataset)
    rec = next(r for r in index.patients[pid] if r.number == number)
    truth = load_mask(rec)
    fixed = corr.paint(truth, [(30, 30), (60, 30)], 6)
    return corr.save_correction(load_image(rec), fixed, np.zeros_like(truth), weights_version="parent",
                                source=rec.image_path.name, patient_id=pid, source_slice=number, truth=truth, root=root)


def test_the_options_and_their_rules(tmp_path: Path) -> None:
    args = build_parser().parse_args(["--corrections", "C", "--corrections-weight", "7", "--init-from", "W", "--task", "seg"])
    cfg = config_from_args(args)
    assert (cfg.corrections, cfg.corrections_weight, cfg.problems()) == ("C", 7, [])
    assert TrainConfig().corrections_weight == 10
    assert any("--init-from" in p for p in TrainConfig(corrections="C").problems())
    assert any("--task seg" in p for p in TrainConfig(corrections="C", init_from="W", task="grade").problems())
    assert any("Corrections weight must be at most 100" in p for p in TrainConfig(corrections="C", init_from="W",
                                                                                    corrections_weight=500).problems())


@pytest.mark.slow  # a real (tiny) training run
def test_problems_before_launching(parent: Path, synthetic_root: Path, tmp_path: Path, tiny_weights: Path) -> None:
    index = scan_dataset(synthetic_root)
    empty = TrainConfig(corrections=str(tmp_path / "none"), init_from=str(parent), task="seg")
    assert any("no corrected slices" in p for p in fine_tune_problems(empty, index))
    correct(tmp_path / "c", synthetic_root, index.patient_ids[0], 3)
    ok = TrainConfig(corrections=str(tmp_path / "c"), init_from=str(parent), task="seg")
    assert fine_tune_problems(ok, index) == []
    no_split = TrainConfig(corrections=str(tmp_path / "c"), init_from=str(tiny_weights), task="seg")
    assert any("record no patient split" in p for p in fine_tune_problems(no_split, index))


@pytest.mark.slow  # a real (tiny) training run
def test_the_fine_tune_keeps_its_parents_split_even_when_the_dataset_grew(parent: Path, synthetic_root: Path,
                                                                          synthetic_copy: Path) -> None:
    card = read_card(parent)
    cfg = TrainConfig(corrections="C", init_from=str(parent), task="seg")
    extra = synthetic_copy / "PHANTOM_9999_20991231"
    src = synthetic_copy / card["split"]["train"][0]
    extra.mkdir()
    for f in sorted(src.glob("*.tif"))[:4]:
        (extra / f.name.replace(src.name, extra.name)).write_bytes(f.read_bytes())
    grown = scan_dataset(synthetic_copy)
    assert "PHANTOM_9999_20991231" in grown.patient_ids
    split = inherited_split(cfg, grown)
    assert split == Split(tuple(card["split"]["train"]), tuple(card["split"]["val"]), card["split"]["seed"])
    shrunk = scan_dataset(synthetic_copy)
    del shrunk.patients[card["split"]["val"][0]]
    with pytest.raises(TrainError, match="patients this dataset lacks"):
        inherited_split(cfg, shrunk)


@pytest.mark.slow  # a real (tiny) training run
def test_the_unet_trains_on_corrections_weighted_up_replacing_their_slices(parent: Path, synthetic_root: Path,
                                                                            tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from lggdemo.train import segmentation
    from lggdemo.train.prepare import choose_split, prepare

    card = read_card(parent)
    train_pid, val_pid = card["split"]["train"][0], card["split"]["val"][0]
    root = tmp_path / "c"
    correct(root, synthetic_root, train_pid, 5)
    correct(root, synthetic_root, val_pid, 4)
    cfg = tiny_config(synthetic_root, tmp_path / "o", task="seg", init_from=str(parent), corrections=str(root),
                      corrections_weight=4)
    index = scan_dataset(synthetic_root)
    split = choose_split(cfg, index)
    prep = prepare(index, split, torch.device("cpu"))
    prep.corrections = load_corrections(cfg, split)
    assert prep.corrections.held_back == (val_pid,)
    sel = prep.validation_selection()
    assert set(prep.arrays_256.patient_ids[sel]) == set(split.val) - {val_pid}
    seen: dict[str, torch.Tensor] = {}

    def capture(model: object, opt: object, weights: torch.Tensor, *a: object, **kw: object) -> dict[str, float]:
        seen["weights"] = weights
        return {}

    monkeypatch.setattr(segmentation, "train_loop", capture)
    _, _, info = segmentation.train_segmentation(cfg, prep, segmentation.Progress([]))
    n_train = int(np.isin(prep.arrays_256.patient_ids, split.train).sum())
    w = seen["weights"]
    assert len(w) == n_train - 1 + 2  # the corrected training slice replaced, both corrections added
    assert w[-2:].tolist() == [12.0, 12.0]  # 4x a tumour slice's 3
    assert sorted(info["corrections"]["ids"]) == sorted([f"{train_pid}_1", f"{val_pid}_1"])
    assert info["corrections"]["validation_patients_left_out"] == [val_pid]


@pytest.mark.slow  # a real (tiny) training run
def test_phantom_fine_tune_with_corrections_writes_the_comparison(parent: Path, synthetic_root: Path,
                                                                  tmp_path: Path) -> None:
    card = read_card(parent)
    val_pid, train_pid = card["split"]["val"][1], card["split"]["train"][1]
    root = tmp_path / "corrections"
    correct(root, synthetic_root, val_pid, 6)
    correct(root, synthetic_root, train_pid, 6)
    out = tmp_path / "tuned"
    events: list[dict] = []
    run(tiny_config(synthetic_root, out, task="seg", init_from=str(parent), corrections=str(root), seg_samples=32),
        [events.append])
    assert is_complete(out)
    tuned = read_card(out)
    assert tuned["split"]["train"] == card["split"]["train"] and tuned["split"]["val"] == card["split"]["val"]
    seg = tuned["segmentation"]
    assert set(seg["per_patient_dice"]) == set(card["split"]["val"]) - {val_pid}  # never scored on a trained slice
    assert seg["initialised_from"]["version"] == card["version"]
    ft = seg["fine_tune"]
    assert ft["parent"]["version"] == card["version"]
    assert {s["patient"] for s in ft["corrected_slices"]["slices"]} == {val_pid, train_pid}
    for s in ft["corrected_slices"]["slices"]:
        assert 0 <= s["before"] <= 1 and 0 <= s["after"] <= 1 and s["source_slice"] == 6
    rows = ft["validation"]["patients"]
    assert {r["patient"] for r in rows} == set(card["split"]["val"]) - {val_pid}
    for r in rows:
        assert r["after"] == pytest.approx(seg["per_patient_dice"][r["patient"]], abs=1e-4)
        assert r["change"] == pytest.approx(r["after"] - r["before"], abs=2e-4)
    assert ft["validation"]["worse"] == [r["patient"] for r in rows if r["change"] < -0.01]
    assert ft["validation"]["left_out"] == [val_pid]
    assert any("fine-tuning on 2 corrected slice(s)" in str(e.get("message")) for e in events)
    json.dumps(tuned)  # the card stays plain JSON


@pytest.mark.slow  # two real (tiny) training runs
def test_weights_trained_on_every_patient_fine_tune_and_say_what_cannot_be_compared(synthetic_root: Path,
                                                                                     tmp_path: Path) -> None:
    """The bundled weights train on every patient: their fine-tune keeps that (no patient is unseen by both
    U-Nets, so none is scored) and the comparison says why, instead of the run being refused."""
    every = tmp_path / "every"
    run(tiny_config(synthetic_root, every, val_fraction=0.0))
    index = scan_dataset(synthetic_root)
    root = tmp_path / "c"
    correct(root, synthetic_root, index.patient_ids[0], 6)
    cfg = tiny_config(synthetic_root, tmp_path / "tuned", task="seg", init_from=str(every), corrections=str(root))
    assert fine_tune_problems(cfg, index) == []
    assert inherited_split(cfg, index) == Split(tuple(sorted(index.patient_ids)), (), 0)
    run(cfg)
    tuned = read_card(tmp_path / "tuned")
    assert tuned["split"]["train"] == sorted(index.patient_ids) and tuned["split"]["val"] == []
    ft = tuned["segmentation"]["fine_tune"]
    assert len(ft["corrected_slices"]["slices"]) == 1 and ft["validation"]["patients"] == []
    assert "trained on every patient" in ft["validation"]["note"]
    assert "trained on every patient" in tuned["segmentation"]["held_out_metrics"]


@pytest.mark.slow  # a real (tiny) training run
def test_the_sidebar_settings_become_the_trainers_options(parent: Path, synthetic_root: Path, tmp_path: Path) -> None:
    from lggdemo import jobs

    root = tmp_path / "c"
    settings = jobs.TrainSettings(task="seg", preset="refine", init_from=str(parent), corrections=str(root),
                                  corrections_weight=5)
    args = jobs.trainer_args(settings, data=synthetic_root, out=tmp_path / "o", progress=tmp_path / "p",
                             complete_from=None)
    assert args[args.index("--corrections") + 1] == str(root) and args[args.index("--init-from") + 1] == str(parent)
    assert args[args.index("--corrections-weight") + 1] == "5" and args[args.index("--preset") + 1] == "refine"
    index = scan_dataset(synthetic_root)
    assert any("no corrected slices" in p for p in jobs.validate_settings(settings, index))
    correct(root, synthetic_root, index.patient_ids[0], 2)
    assert jobs.validate_settings(settings, index) == []
