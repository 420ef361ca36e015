"""The retraining sidebar widget and the Train page in AppTest, against the fake trainer (no torch in the job)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lggdemo import jobs
from lggdemo.data.kaggle import scan_dataset
from lggdemo.models import weights

ROOT = Path(__file__).resolve().parents[2]
FAKE = ROOT / "tests" / "fixtures" / "fake_trainer.py"
PAGE = str(ROOT / "pages" / "train.py")


def fake_command(settings: jobs.TrainSettings, **paths: object) -> list[str]:
    return [sys.executable, str(FAKE), *jobs.trainer_args(settings, **paths)]  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, synthetic_root: Path) -> None:
    monkeypatch.setenv("LGG_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("LGG_DATA_DIR", str(synthetic_root))
    monkeypatch.delenv("FAKE_TRAINER_MODE", raising=False)
    monkeypatch.setattr(jobs.settings, "trainer_command", fake_command)
    yield
    if jobs.current() is not None:
        jobs.cancel(force=True)
        jobs.wait(timeout=20)


def test_progress_line_and_durations(tmp_path: Path) -> None:
    from lggdemo.ui.train.page import describe_progress, duration

    assert [duration(s) for s in (None, 4.6, 75, 3725)] == ["—", "5 s", "1 min 15 s", "1 h 02 min"]
    path = tmp_path / jobs.PROGRESS_FILE
    path.write_text(
        '{"event": "start", "models": ["segmentation", "grade"], "time": 0}\n'
        '{"event": "step", "model": "segmentation", "epoch": 2, "epochs": 3, "step": 5, "steps": 24, '
        '"loss": 0.4123, "eta_s": 65, "time": 100}\n'
    )
    run = jobs.RunInfo("r", tmp_path, 0.0, {}, "running", progress=jobs.read_progress(path))
    assert describe_progress(run, now=100.0) == (
        "Segmentation · epoch 2/3 · step 5/24 · loss 0.412 · ETA 1 min 05 s for segmentation, then grade"
    )
    cancelling = jobs.RunInfo("r", tmp_path, 0.0, {}, "running", cancel_requested=101.0, progress=run.progress)
    assert describe_progress(cancelling).startswith("Cancelling")


def _sidebar_script() -> None:
    import streamlit as st

    from lggdemo.ui.train.sidebar import render_training_sidebar

    with st.sidebar:
        render_training_sidebar()


def _sidebar() -> AppTest:
    at = AppTest.from_function(_sidebar_script, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "success", "info", "warning", "error")
             for e in getattr(at.sidebar, kind)]  # fmt: skip
    return "\n".join(str(p) for p in parts)


def _button(at: AppTest, label: str):  # noqa: ANN202
    found = [b for b in at.button if b.label == label]
    assert found, f"no button {label!r}: {[b.label for b in at.button]}"
    return found[0]


def _start(at: AppTest) -> AppTest:
    _button(at, "Start training").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_sidebar_form_names_the_dataset() -> None:
    at = _sidebar()
    assert at.sidebar.expander[0].label == "Retrain models"
    assert at.radio(key="lgg_train_task").options == ["Both", "Segmentation", "Grade"]
    assert at.radio(key="lgg_train_preset").value == "quick"
    assert "Dataset: Synthetic phantoms (not patient data): 12 patients" in _texts(at)
    assert not _button(at, "Start training").disabled


@pytest.mark.parametrize(
    ("epochs", "size", "device", "needles"),
    [
        (0, 100, "auto", ["Epochs must be at least 1 (got 0)", "multiple of 32"]),
        (None, None, "cuda", ["CUDA was chosen but this machine has none"]),
    ],
)
def test_impossible_settings_are_refused_with_messages(
    epochs: int | None, size: int | None, device: str, needles: list[str]
) -> None:
    if device == "cuda":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    at = _sidebar()
    at.number_input(key="lgg_train_epochs").set_value(epochs)
    at.number_input(key="lgg_train_size").set_value(size)
    at.selectbox(key="lgg_train_device").set_value(device)
    _start(at)
    errors = [e.value for e in at.sidebar.error]
    assert all(any(n in e for e in errors) for n in needles), errors
    assert jobs.current() is None and jobs.list_runs() == []


def test_run_from_the_sidebar_then_cancel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_TRAINER_STEP_S", "0.3")
    at = _sidebar()
    at.number_input(key="lgg_train_epochs").set_value(2)
    _start(at)
    run = jobs.current()
    assert run is not None and run.settings["epochs"] == 2
    assert f"Run {run.name} started on the synthetic phantoms" in _texts(at)
    assert f"Training run {run.name}" in _texts(at) and len(at.get("progress")) == 1
    assert _button(at, "Start training").disabled
    _button(at, "Cancel training").click()
    at.run()
    done = jobs.wait(timeout=30)
    assert done is not None and done.state == "cancelled"
    at = _sidebar()  # a new tab: the outcome comes from disk
    assert f"Run {run.name} was cancelled" in _texts(at) and "unchanged" in _texts(at)
    _button(at, "Dismiss").click()
    at.run()
    assert "was cancelled" not in _texts(at) and jobs.find_run(run.name).dismissed


def test_successful_run_is_reported_active() -> None:
    at = _sidebar()
    at.radio(key="lgg_train_task").set_value("all")
    at.number_input(key="lgg_train_epochs").set_value(1)
    _start(at)
    run = jobs.wait(timeout=30)
    assert run is not None and run.state == "succeeded" and weights.active_dir() == run.path.resolve()
    at.run()
    assert f"Run {run.name} finished" in _texts(at) and "now active" in _texts(at)


def test_failed_run_shows_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_TRAINER_MODE", "fail")
    at = _sidebar()
    _start(at)
    jobs.wait(timeout=30)
    at.run()
    errors = "\n".join(e.value for e in at.sidebar.error)
    assert "Validation loss is NaN" in errors and "left unchanged" in errors
    assert weights.active_dir() == weights.BUNDLED_DIR


def test_active_weights_of_a_distributed_run_show_its_world_size(tiny_weights: Path, tmp_path: Path) -> None:
    import json
    import shutil

    folder = tmp_path / "ddp-run"
    shutil.copytree(tiny_weights, folder)
    card = weights.read_card(folder)
    card["distributed"] = {"world_size": 4, "backend": "nccl", "per_rank_batch_size": 16, "global_batch_size": 64}
    (folder / weights.CARD_FILE).write_text(json.dumps(card))
    weights.set_active(folder)
    at = _page()
    assert any("Trained by 4 processes (torchrun, nccl backend; 16 slices" in c.value for c in at.caption)
    weights.set_active(None)
    assert not any("processes (torchrun" in c.value for c in _page().caption)  # a plain run's card says nothing


def _page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _fake_run(synthetic_root: Path, mode: str = "ok") -> jobs.RunInfo:
    import os

    os.environ["FAKE_TRAINER_MODE"] = mode
    try:
        index = scan_dataset(synthetic_root)
        run = jobs.start(jobs.TrainSettings(epochs=2, image_size=64, device="cpu"), index.root, index=index)
        out = jobs.wait(timeout=30)
    finally:
        del os.environ["FAKE_TRAINER_MODE"]
    assert out is not None and out.name == run.name
    time.sleep(1.01)  # run folders are named by the second
    return out


def test_train_page_without_runs() -> None:
    at = _page()
    assert at.title[0].value == "Train"
    assert any("No run yet" in i.value for i in at.info)
    assert any("bundled weights" in m.value for m in at.markdown)


def test_train_page_history_activate_and_restore(synthetic_root: Path) -> None:
    first = _fake_run(synthetic_root)
    failed = _fake_run(synthetic_root, "fail")
    second = _fake_run(synthetic_root)
    at = _page()
    assert any(f"run **{second.name}**" in m.value for m in at.markdown)  # the active weights
    table = at.dataframe[0].value
    assert list(table["run"]) == [second.name, failed.name, first.name]
    assert list(table["activatable"]) == [True, False, True]
    assert table.loc[0, "state"] == "succeeded · active" and table.loc[1, "state"] == "failed"
    assert table.loc[0, "segmentation dice"] == pytest.approx(0.7)
    assert len(at.get("plotly_chart")) == 1  # the latest run's curves
    at.selectbox(key="lgg_run_pick").set_value(failed.name)
    at.run()
    assert _button(at, "Activate this run").disabled
    at.selectbox(key="lgg_run_pick").set_value(first.name)
    at.run()
    _button(at, "Activate this run").click()
    at.run()
    assert weights.active_dir() == first.path.resolve()
    assert any(f"Run {first.name} is now active" in s.value for s in at.success)
    _button(at, "Restore bundled weights").click()
    at.run()
    assert weights.active_dir() == weights.BUNDLED_DIR and not weights.pointer_path().exists()
    assert any("bundled weights (`weights/`)" in m.value for m in at.markdown)


def test_a_second_sessions_start_is_refused_with_a_visible_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11, defect 4: two tabs show an enabled Start; the second click must say why nothing started."""
    monkeypatch.setenv("FAKE_TRAINER_STEP_S", "0.3")
    first, second = _sidebar(), _sidebar()
    assert not _button(second, "Start training").disabled
    _start(first)
    run = jobs.current()
    assert run is not None
    _start(second)
    shown = _texts(second)
    assert f"run {run.name}" in shown.lower() and "already in progress" in shown, shown
    assert [r.name for r in jobs.list_runs()] == [run.name]  # nothing else was started
    assert _button(second, "Start training").disabled  # and the form now says why it is off


# --- a shared server: visitors look, the operator acts (issue 11, defect 3) -------------------------


def _labels(at: AppTest) -> dict[str, bool]:
    """Every button's label -> whether it can be clicked."""
    return {b.label: not b.disabled for b in at.button}


def test_read_only_visitors_cannot_start_cancel_activate_delete_or_restore(
    monkeypatch: pytest.MonkeyPatch, synthetic_root: Path
) -> None:
    first = _fake_run(synthetic_root)
    second = _fake_run(synthetic_root)  # active now (made before the server went read-only)
    monkeypatch.setenv("LGG_READ_ONLY", "1")
    monkeypatch.setenv("FAKE_TRAINER_STEP_S", "0.3")
    index = scan_dataset(synthetic_root)
    running = jobs.start(jobs.TrainSettings(epochs=2, image_size=64, device="cpu"), index.root, index=index)

    side = _sidebar()
    assert "Start training" not in _labels(side) and "Cancel training" not in _labels(side)
    assert "Read-only for visitors" in _texts(side) and "LGG_READ_ONLY" in _texts(side)
    assert "Operator password" not in [t.label for t in side.text_input]  # no password set: off for everyone

    page = _page()
    buttons = _labels(page)
    assert buttons.get("Cancel training") is None and buttons.get("Restore bundled weights") is False
    assert any("Read-only for visitors" in i.value for i in page.info)
    page.selectbox(key="lgg_run_pick").set_value(first.name)
    page.run()
    assert _labels(page)["Activate this run"] is False and _labels(page)["Delete this run"] is False
    assert page.checkbox(key=f"lgg_delete_ok_{first.name}").disabled

    assert jobs.current() is not None and jobs.current().name == running.name  # still running, not cancelled
    assert weights.active_dir() == second.path.resolve()  # nothing activated or restored
    assert {r.name for r in jobs.list_runs()} == {first.name, second.name, running.name}  # nothing deleted


def test_a_finished_run_is_not_activated_by_itself_on_a_shared_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LGG_OPERATOR_PASSWORD", "s3cret")
    at = _sidebar()
    at.session_state["lgg_operator_unlocked"] = True
    at.run()
    _start(at)
    run = jobs.wait(timeout=30)
    assert run is not None and run.state == "succeeded" and not run.activated
    assert weights.active_dir() == weights.BUNDLED_DIR and "operator activates it" in run.message


def test_the_operator_unlocks_with_the_password_and_may_act(monkeypatch: pytest.MonkeyPatch, synthetic_root: Path) -> None:
    first = _fake_run(synthetic_root)
    monkeypatch.setenv("LGG_OPERATOR_PASSWORD", "s3cret")
    monkeypatch.setenv("FAKE_TRAINER_STEP_S", "0.3")
    at = _sidebar()
    assert "Start training" not in _labels(at)
    at.text_input(key="lgg_operator_password").set_value("wrong")
    _button(at, "Unlock").click()
    at.run()
    assert any("Wrong operator password" in e.value for e in at.sidebar.error)
    assert "Start training" not in _labels(at)
    at.text_input(key="lgg_operator_password").set_value("s3cret")
    _button(at, "Unlock").click()
    at.run()
    assert "Operator mode" in _texts(at) and _labels(at)["Start training"]
    assert "Operator password" not in [t.label for t in at.text_input]
    _start(at)
    run = jobs.current()
    assert run is not None
    _button(at, "Cancel training").click()
    at.run()
    assert jobs.wait(timeout=30).state == "cancelled"

    page = AppTest.from_file(PAGE, default_timeout=60)
    page.session_state["lgg_operator_unlocked"] = True  # the same unlock, in the Train page's session
    page.run()
    assert weights.active_dir() == first.path.resolve()
    _button(page, "Restore bundled weights").click()
    page.run()
    assert weights.active_dir() == weights.BUNDLED_DIR
    page.selectbox(key="lgg_run_pick").set_value(first.name)
    page.run()
    _button(page, "Activate this run").click()
    page.run()
    assert weights.active_dir() == first.path.resolve()


def test_the_train_page_draws_the_grade_reliability_and_says_why_a_number_is_shown(tiny_weights: Path,
                                                                                   tmp_path: Path) -> None:
    import json
    import shutil

    def oof(lo: float) -> dict:
        bins = [{"predicted": 0.3, "observed": 0.35, "n": 40}, {"predicted": 0.7, "observed": 0.6, "n": 47}]
        return {"model": {"auc": {"value": 0.68, "ci95": [lo, 0.79], "n": 87}, "reliability_bins": bins},
                "age_only": {"auc": {"value": 0.5, "ci95": [0.38, 0.62], "n": 87},
                             "reliability_bins": [{"predicted": 0.55, "observed": 0.55, "n": 87}]}}

    folder = tmp_path / "oof-run"
    shutil.copytree(tiny_weights, folder)
    card = weights.read_card(folder)
    card["grade"]["out_of_fold"] = oof(0.57)
    card["grade"]["calibration"] = {"a": 0.8, "b": 0.05, "n": 87}
    card["segmentation"]["cross_validation"] = {"metrics": {"per_volume_dice_mean": {"value": 0.817, "ci95": [0.783, 0.849],
                                                                                      "n": 88}}}
    (folder / weights.CARD_FILE).write_text(json.dumps(card))
    weights.set_active(folder)
    at = _page()
    assert any(c.value.startswith("**Masks:** per-volume Dice 0.82 (95% CI 0.78–0.85), n = 88 patients, cross-validated")
               for c in at.caption)
    charts = at.get("plotly_chart")
    assert charts and any("Reliability of P(G3)" in c.proto.spec for c in charts)
    assert any("P(G3) is shown because the grade model's out-of-fold AUC (0.68 (95% CI 0.57–0.79)" in c.value
               and "Platt-calibrated" in c.value for c in at.caption)
    card["grade"]["out_of_fold"] = oof(0.45)
    (folder / weights.CARD_FILE).write_text(json.dumps(card))
    at = _page()
    assert any("did no better than chance (out-of-fold AUC 0.68, 95% CI 0.45–0.79), so no per-patient probability "
               "is shown" in c.value for c in at.caption)
    weights.set_active(None)


def test_curves_draw_a_second_unet_stage_after_the_first() -> None:
    from lggdemo.ui.train.page import _trained_fits

    records = [{"phase": "stage 1", "epoch": 1}, {"phase": "stage 1", "epoch": 2}, {"phase": "cv fusion fold 1/2", "epoch": 1},
               {"phase": "refine", "epoch": 1}, {"phase": "refine", "epoch": 2}]
    assert [x for x, _ in _trained_fits(records, "epoch")] == [1, 2, 3, 4]
