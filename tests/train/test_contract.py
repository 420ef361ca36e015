"""The trainer<->job contract (``lggdemo.train.events``) and the one settings schema, end to end.

A real tiny trainer run's ``progress.jsonl`` is fed through the job manager's reader line by line: the
fractions, phases and metrics the pages show come from exactly what the trainer wrote. The fake trainer
the job tests use is held to the same contract, so it cannot drift from the real one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lggdemo import jobs
from lggdemo.train.cli import build_parser, config_from_args
from lggdemo.train.config import OPTIONS, TrainConfig
from lggdemo.train.events import FINAL_EVENTS, event_problems

FAKE = Path(__file__).resolve().parents[1] / "fixtures" / "fake_trainer.py"


@pytest.fixture(scope="module")
def real_events(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """A tiny real run (both models, 2-fold grade CV: 7 grade fits), its events as written to --progress-file."""
    from lggdemo.train import JsonlWriter, run

    out = tmp_path_factory.mktemp("contract")
    cfg = TrainConfig.from_preset("quick", data=str(synthetic_root), out=str(out / "weights"), encoder="resnet18",
                                  image_size=32, grade_image_size=32, seg_epochs=2, grade_epochs=1, seg_samples=16,
                                  grade_samples=16, batch_size=8, folds=2, threads=1)
    writer = JsonlWriter(out / "progress.jsonl")
    try:
        run(cfg, [writer])
    finally:
        writer.close()
    return [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_a_real_runs_events_keep_the_contract(real_events: list[dict]) -> None:
    assert [p for e in real_events for p in event_problems(e)] == []
    kinds = [e["event"] for e in real_events]
    assert kinds[0] == "start" and kinds[-1] == "done" and sum(k in FINAL_EVENTS for k in kinds) == 1


@pytest.mark.slow
def test_the_job_reader_follows_a_real_run(real_events: list[dict], tmp_path: Path) -> None:
    """Line by line, as a page polling the file would see it: the fraction only grows and ends at 1."""
    path = tmp_path / jobs.PROGRESS_FILE
    fractions, phases = [], []
    with open(path, "w") as fh:
        for event in real_events:
            fh.write(json.dumps(event) + "\n")
            fh.flush()
            p = jobs.read_progress(path)
            fractions.append(p.fraction)
            phases.append((p.model, p.phase))
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert fractions == sorted(fractions), fractions  # never moves backwards, across the 7 grade fits too
    assert fractions[-1] == 1.0 and 0.0 < fractions[len(fractions) // 2] < 1.0
    seg_done = max(f for f, (m, _) in zip(fractions, phases) if m == "segmentation")
    assert seg_done == pytest.approx(0.5)  # the first of two models
    grade_phases = [ph for m, ph in phases if m == "grade"]
    assert grade_phases[0] == "cv fusion fold 1/2" and "cv image_only fold 2/2" in grade_phases
    assert grade_phases[-1] == "final"
    p = jobs.read_progress(path)
    assert p.models == ("segmentation", "grade") and p.final is not None and p.final["event"] == "done"
    assert {h["model"] for h in p.history} == {"segmentation", "grade"}
    assert [h["epoch"] for h in p.history if h["model"] == "segmentation"] == [1, 2]
    assert "per_volume_dice_mean" in p.history[0]["val"]  # the per-epoch curve the Train page draws
    assert set(p.final["metrics"]) == {"segmentation", "grade"}
    assert 0.0 <= p.final["metrics"]["segmentation"]["per_volume_dice_mean"]["value"] <= 1.0
    assert p.eta_now() == 0.0


def test_the_fake_trainer_keeps_the_same_contract(synthetic_root: Path, tmp_path: Path) -> None:
    progress = tmp_path / "progress.jsonl"
    argv = jobs.trainer_args(jobs.TrainSettings(epochs=2, image_size=64, device="cpu"), data=synthetic_root,
                             out=tmp_path / "out", progress=progress, complete_from=None)
    env = {**os.environ, "FAKE_TRAINER_STEPS": "3"}
    subprocess.run([sys.executable, str(FAKE), *argv], check=True, capture_output=True, env=env, timeout=60)
    events = [json.loads(line) for line in progress.read_text().splitlines()]
    assert [p for e in events for p in event_problems(e)] == [] and events[-1]["event"] == "done"


def test_settings_become_the_same_config_through_the_command_line(tmp_path: Path) -> None:
    """The job's settings and the CLI are two views of one schema: settings -> args -> parser -> the same config."""
    assert {f.name for f in dataclasses.fields(jobs.TrainSettings)} <= set(OPTIONS)
    settings = jobs.TrainSettings(task="seg", preset="full", epochs=3, image_size=64, batch_size=4, device="cpu", seed=7)
    paths = {"data": tmp_path / "d", "out": tmp_path / "o", "progress": tmp_path / "p.jsonl", "complete_from": None}
    parsed = config_from_args(build_parser().parse_args(jobs.trainer_args(settings, **paths)))
    expected = dataclasses.replace(settings.to_config(), data=str(paths["data"]), out=str(paths["out"]),
                                   progress_file=str(paths["progress"]))
    assert parsed == expected
    assert (parsed.seg_epochs, parsed.grade_epochs, parsed.folds) == (3, 3, 4)  # --epochs sets both; the rest: full
    assert jobs.MAX_IMAGE_SIZE == OPTIONS["image_size"].setting.maximum == 256


@pytest.mark.parametrize(("change", "needle"), [({"seg_epochs": 0}, "Epochs must be at least 1 (got 0)"),
                                                 ({"image_size": 288}, "between 32 and 256"),
                                                 ({"preset": "refine"}, "--init-from")])
def test_one_rule_book_for_the_cli_and_the_jobs(change: dict, needle: str, tmp_path: Path) -> None:
    cfg = dataclasses.replace(TrainConfig(), **change)
    assert any(needle in p for p in cfg.problems())
    if "seg_epochs" in change:
        settings_problems = jobs.TrainSettings(epochs=0).to_config().problems()
        assert settings_problems == cfg.problems()  # the same words, whoever asks
