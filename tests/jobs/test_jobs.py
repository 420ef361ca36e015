"""The job manager against a fake trainer (same CLI, events and exit codes, no torch): fast and deterministic."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lggdemo import _fs, jobs
from lggdemo.data.kaggle import DatasetIndex, scan_dataset
from lggdemo.data.synthetic import PhantomConfig, generate
from lggdemo.models import weights
from lggdemo.train.events import cv_fit, final_fit

FAKE = Path(__file__).resolve().parents[1] / "fixtures" / "fake_trainer.py"
# The bundled card until 2026-12-02 (a held-out split, so metrics per model), archived with the experiments.
ARCHIVED_CARD = Path(__file__).resolve().parents[2] / "docs" / "experiments" / "bundled-2026-11-25-refine-s0-card.json"
QUICK = jobs.TrainSettings(task="all", preset="quick", epochs=2, image_size=64, device="cpu")


def fake_command(settings: jobs.TrainSettings, **paths: object) -> list[str]:
    return [sys.executable, str(FAKE), *jobs.trainer_args(settings, **paths)]  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def own_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A runs folder per test: locks, pointers and runs of one test never leak into another."""
    runs = tmp_path / "runs"
    monkeypatch.setenv("LGG_RUNS_DIR", str(runs))
    monkeypatch.delenv("FAKE_TRAINER_MODE", raising=False)
    monkeypatch.delenv("FAKE_TRAINER_STEP_S", raising=False)
    yield runs
    if jobs.current() is not None:  # never leave a trainer behind
        jobs.cancel(force=True)
        jobs.wait(timeout=20)


@pytest.fixture(scope="module")
def index(synthetic_root: Path) -> DatasetIndex:
    return scan_dataset(synthetic_root)


def start(index: DatasetIndex, settings: jobs.TrainSettings = QUICK) -> jobs.RunInfo:
    return jobs.start(settings, index.root, index=index, command=fake_command)


def wait_for_steps(run: jobs.RunInfo, n: int = 1, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(1 for line in _lines(run.path / jobs.PROGRESS_FILE) if '"step"' in line) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"no step event within {timeout} s; log:\n{jobs.log_tail(run)}")


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except OSError:
        return []


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(Path(directory).iterdir()) if p.is_file()}


# --- validation --------------------------------------------------------------------------------------


def test_valid_settings_have_no_problems(index: DatasetIndex) -> None:
    assert jobs.validate_settings(QUICK, index) == []
    assert jobs.validate_settings(jobs.TrainSettings(), index) == []  # preset defaults


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"epochs": 0}, "Epochs must be at least 1"),
        ({"image_size": 100}, "multiple of 32"),
        ({"image_size": 0}, "multiple of 32"),
        ({"image_size": 288}, "between 32 and 256"),
        ({"batch_size": 1}, "Batch size must be at least 2"),
        ({"batch_size": 1024}, "Samples per epoch must be at least one batch"),
        ({"task": "both-ish"}, "Unknown task"),
        ({"preset": "huge"}, "Unknown preset"),
        ({"device": "tpu"}, "Unknown device"),
    ],
)
def test_impossible_settings_are_named(index: DatasetIndex, change: dict[str, object], needle: str) -> None:
    problems = jobs.validate_settings(jobs.TrainSettings(**change), index)  # type: ignore[arg-type]
    assert len(problems) == 1 and needle in problems[0]


def test_cuda_without_gpu_is_refused(index: DatasetIndex) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    problems = jobs.validate_settings(jobs.TrainSettings(device="cuda"), index)
    assert problems and "CUDA" in problems[0]


def test_dataset_problems(tmp_path: Path, index: DatasetIndex) -> None:
    assert "No dataset" in jobs.validate_settings(QUICK, None)[0]
    assert "No usable dataset: gone" in jobs.validate_settings(QUICK, None, dataset_error="gone")[0]
    tiny = scan_dataset(generate(tmp_path / "tiny", PhantomConfig(n_patients=2, min_slices=2, max_slices=2)))
    assert "too small: Only 2 patients" in jobs.validate_settings(QUICK, tiny)[0]
    with pytest.raises(jobs.SettingsError, match="at least 4"):
        jobs.start(QUICK, tiny.root, command=fake_command)  # scans the folder itself
    assert not (_fs.runs_dir() / jobs.LOCK_FILE).exists()


def test_start_refuses_bad_settings_before_launching(index: DatasetIndex) -> None:
    with pytest.raises(jobs.SettingsError) as err:
        start(index, jobs.TrainSettings(epochs=0, image_size=100))
    assert len(err.value.problems) == 2
    assert jobs.list_runs() == [] and jobs.current() is None


def test_trainer_arguments_follow_the_contract(tmp_path: Path) -> None:
    args = jobs.trainer_args(jobs.TrainSettings(task="seg", epochs=3), data=tmp_path / "d", out=tmp_path / "o",
                             progress=tmp_path / "o" / "p.jsonl", complete_from=tmp_path / "w")  # fmt: skip
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    assert pairs["--task"] == "seg" and pairs["--epochs"] == "3" and pairs["--complete-from"] == str(tmp_path / "w")
    assert "--image-size" not in pairs  # left to the preset
    assert jobs.trainer_command(jobs.TrainSettings(), data=tmp_path, out=tmp_path, progress=tmp_path,
                                complete_from=None)[1:3] == ["-m", "lggdemo.train"]  # fmt: skip


# --- progress ----------------------------------------------------------------------------------------


def test_progress_parsing_skips_partial_and_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "progress.jsonl"
    lines = [
        {"event": "start", "models": ["segmentation", "grade"], "epochs": 2, "time": 1.0},
        {"event": "step", "model": "segmentation", "epoch": 1, "epochs": 2, "step": 5, "steps": 10, "loss": 0.5,
         "eta_s": 30.0, "time": 2.0},
        {"event": "epoch", "model": "segmentation", "epoch": 1, "epochs": 2, "train_loss": 0.4, "val": {"dice": 0.6},
         "eta_s": 20.0, "time": 3.0},
        {"event": "step", "model": "grade", "epoch": 2, "epochs": 2, "step": 5, "steps": 10, "loss": 0.25,
         "eta_s": 10.0, "time": 4.0},
    ]  # fmt: skip
    text = "\n".join(json.dumps(x) for x in lines) + "\nnot json\n[1, 2]\n" + '{"event": "done", "metr'
    path.write_text(text)
    p = jobs.read_progress(path)
    assert p.events == 4 and p.bad_lines == 2 and p.final is None  # the half-written "done" is not read yet
    assert p.model == "grade" and (p.epoch, p.epochs, p.step, p.steps) == (2, 2, 5, 10)
    assert p.loss == pytest.approx(0.25)
    assert p.fraction == pytest.approx((1 + 1.5 / 2) / 2)  # second of two models, 3/4 through its epochs
    assert [h["val"]["dice"] for h in p.history] == [0.6]
    assert p.eta_now(now=6.0) == pytest.approx(8.0) and p.eta_now(now=100.0) == 0.0
    with open(path, "a") as fh:  # the trainer finishes its line
        fh.write('ics": {}, "seconds": 12.5}\n')
    done = jobs.read_progress(path)
    assert done.final is not None and done.final["event"] == "done" and done.fraction == 1.0
    assert jobs.read_progress(tmp_path / "missing.jsonl") == jobs.RunProgress()


def test_progress_counts_cross_validation_fits(tmp_path: Path) -> None:
    """The full preset fits the grade model 3k+1 times (k folds x 3 variants, then the final one)."""
    path = tmp_path / "progress.jsonl"
    step = {"event": "step", "model": "grade", "epoch": 1, "epochs": 2, "step": 0, "steps": 4, "loss": 0.5}
    events = [{"event": "start", "models": ["grade"], "epochs": {"grade": 2}},
              {**step, **cv_fit("clinical_only", 0, 2).tags()}]  # fmt: skip
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    assert jobs.read_progress(path).fraction == pytest.approx(2 / 7)  # fit 3 of 7 just begun
    with open(path, "a") as fh:
        fh.write(json.dumps({**step, **final_fit(2).tags(), "epoch": 2, "step": 2}) + "\n")
        fh.write(json.dumps({"event": "info", "message": "grade CV fusion: AUC 0.700"}) + "\n")
    p = jobs.read_progress(path)
    assert p.fraction == pytest.approx((6 + 0.75) / 7) and p.phase == "final"
    assert p.notes == ("grade CV fusion: AUC 0.700",)


def test_eta_adds_the_cross_validation_fits_still_to_come(tmp_path: Path) -> None:
    path = tmp_path / "progress.jsonl"
    step = {"event": "step", "model": "grade", **cv_fit("fusion", 0, 2).tags(), "epoch": 1, "epochs": 1, "steps": 4}
    events = [{"event": "start", "models": ["grade"], "time": 0.0},
              {**step, "step": 1, "loss": 0.5, "eta_s": 40.0, "time": 0.0},
              {**step, "step": 2, "loss": 0.5, "eta_s": 30.0, "time": 10.0}]  # fmt: skip
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    p = jobs.read_progress(path)
    assert p.eta_s == pytest.approx(30 + 6 * 40)  # this fit's 30 s, then 6 more fits of 40 s each
    assert p.eta_now(now=20.0) == pytest.approx(30 + 6 * 40 - 10)
    replaced = tmp_path / "new.jsonl"  # a new file at the same path is parsed from its start
    replaced.write_text(json.dumps(events[0]) + "\n")
    os.replace(replaced, path)
    assert jobs.read_progress(path).events == 1


# --- running -----------------------------------------------------------------------------------------


def test_successful_run_becomes_active(index: DatasetIndex, own_runs: Path) -> None:
    assert weights.active_dir() == weights.BUNDLED_DIR
    run = start(index)
    assert run.path.parent == own_runs and run.state == "running"
    assert (own_runs / jobs.LOCK_FILE).is_file()
    done = jobs.wait(timeout=30)
    assert done is not None and done.state == "succeeded" and done.exit_code == 0 and done.activated
    assert done.complete and done.active and weights.active_dir() == run.path.resolve()
    assert done.progress.fraction == 1.0 and len(done.progress.history) == 4  # 2 models x 2 epochs
    assert done.metrics["segmentation"]["dice"] == 0.7
    assert "fake trainer: task=all epochs=2" in jobs.log_tail(done)
    with open(run.path / jobs.LOG_FILE, "a") as fh:  # a progress bar redrawn with \r shows its last state only
        fh.write("bar 10%\rbar 50%\rbar 100%\r\nlast line\n")
    assert jobs.log_tail(done, lines=2) == "bar 100%\nlast line"
    assert not (own_runs / jobs.LOCK_FILE).exists() and jobs.current() is None
    job = json.loads((run.path / jobs.JOB_FILE).read_text())
    assert job["settings"]["epochs"] == 2 and "--out" in job["command"]
    assert [r.name for r in jobs.list_runs()] == [run.name]


def test_single_task_is_completed_from_the_active_weights(index: DatasetIndex) -> None:
    first = start(index)
    jobs.wait(timeout=30)
    seg_only = start(index, jobs.TrainSettings(task="seg", epochs=1, image_size=64, device="cpu"))
    out = jobs.wait(timeout=30)
    assert out is not None and out.state == "succeeded" and out.active
    assert (seg_only.path / weights.GRADE_FILE).read_bytes() == (first.path / weights.GRADE_FILE).read_bytes()
    assert (seg_only.path / weights.SEG_FILE).read_bytes() != (first.path / weights.SEG_FILE).read_bytes()


def test_cancel_leaves_the_active_weights_byte_identical(index: DatasetIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    previous = start(index)
    jobs.wait(timeout=30)
    pointer_before = weights.pointer_path().read_bytes()
    files_before = snapshot(previous.path)
    monkeypatch.setenv("FAKE_TRAINER_STEP_S", "0.2")
    run = start(index)
    wait_for_steps(run)
    cancelling = jobs.cancel()
    assert cancelling.running and cancelling.cancel_requested is not None
    out = jobs.wait(timeout=30)
    assert out is not None and out.name == run.name
    assert out.state == "cancelled" and out.exit_code == jobs.EXIT_CANCELLED and not out.activated
    final = out.progress.final
    assert final is not None and final["event"] == "cancelled" and "unchanged" in final["message"]
    assert not out.complete and not out.active
    assert weights.pointer_path().read_bytes() == pointer_before
    assert snapshot(previous.path) == files_before and weights.active_dir() == previous.path.resolve()
    with pytest.raises(jobs.JobError, match="not a complete"):
        jobs.activate(run.name)
    with pytest.raises(jobs.JobError, match="No training run"):
        jobs.cancel()


def test_second_start_is_refused_while_running(index: DatasetIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_TRAINER_STEP_S", "0.2")
    run = start(index)
    with pytest.raises(jobs.JobBusy, match=f"already in progress.*{run.name}|{run.name}.*already in progress"):
        start(index)
    assert [r.name for r in jobs.list_runs()] == [run.name]  # no second folder
    jobs.cancel()
    assert jobs.wait(timeout=30).state == "cancelled"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("mode", "state", "needle"),
    [
        ("fail", "failed", "Validation loss is NaN"),
        ("invalid", "failed", "Too few patients"),
        ("crash", "failed", "exited with code 1"),
        ("nocard", "failed", "not a complete weights folder"),
        ("diskfull", "failed", "No space left on device"),
    ],
)
def test_failed_runs_are_not_activated(
    index: DatasetIndex, monkeypatch: pytest.MonkeyPatch, mode: str, state: str, needle: str
) -> None:
    monkeypatch.setenv("FAKE_TRAINER_MODE", mode)
    run = start(index)
    out = jobs.wait(timeout=30)
    assert out is not None and out.state == state and needle in out.message and "left unchanged" in out.message
    assert not out.activated and not out.active and weights.active_dir() == weights.BUNDLED_DIR
    assert not weights.pointer_path().exists()
    with pytest.raises(jobs.JobError):
        jobs.activate(run.name)


def test_stale_lock_from_a_dead_process_is_cleared(index: DatasetIndex, own_runs: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = own_runs / "20200101-000000"
    orphan.mkdir(parents=True)
    (orphan / jobs.JOB_FILE).write_text(json.dumps({"name": orphan.name, "created": 1.0, "settings": {}}))
    (own_runs / jobs.LOCK_FILE).write_text(json.dumps({"run": orphan.name, "pid": dead.pid}))
    assert jobs.current() is None and not (own_runs / jobs.LOCK_FILE).exists()
    settled = jobs.find_run(orphan.name)
    assert settled.state == "failed" and "without a final event" in settled.message
    run = start(index)  # the lock no longer blocks
    assert jobs.wait(timeout=30).name == run.name  # type: ignore[union-attr]


def test_lock_naming_a_live_process_that_is_not_the_trainer_is_stale(own_runs: Path) -> None:
    run_dir = own_runs / "20200101-000001"
    run_dir.mkdir(parents=True)
    (own_runs / jobs.LOCK_FILE).write_text(json.dumps({"run": run_dir.name, "pid": os.getpid()}))  # pytest, not it
    assert jobs.current() is None and not (own_runs / jobs.LOCK_FILE).exists()


def test_outcome_decided_without_the_exit_code(tmp_path: Path, index: DatasetIndex, own_runs: Path) -> None:
    """After a server restart nobody saw the exit code: events and completeness decide."""
    run = start(index)
    jobs.wait(timeout=30)
    (run.path / jobs.RESULT_FILE).unlink()
    weights.set_active(None)
    assert jobs.finish(run.path, None).state == "succeeded" and weights.active_dir() == run.path.resolve()


def test_disk_full_while_starting_changes_nothing(index: DatasetIndex, own_runs: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    def full(path: Path, value: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(jobs.files, "write_json", full)
    with pytest.raises(jobs.JobError, match="disk is full"):
        start(index)
    assert not (own_runs / jobs.LOCK_FILE).exists()
    assert [p for p in own_runs.iterdir() if p.is_dir()] == []


def test_trainer_is_stopped_when_its_lock_cannot_be_written(
    index: DatasetIndex, own_runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Launched, then the disk fills: no untracked trainer may keep running, no half-made run may stay."""
    write = jobs.files.write_json
    launched: list[subprocess.Popen[bytes]] = []

    def lock_fails(path: Path, value: dict[str, object]) -> None:
        if path.name == jobs.LOCK_FILE:
            launched.extend(jobs.process.CHILDREN.values())
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        write(path, value)

    monkeypatch.setenv("FAKE_TRAINER_STEP_S", "0.5")
    monkeypatch.setattr(jobs.files, "write_json", lock_fails)
    with pytest.raises(jobs.JobError, match="disk is full"):
        start(index)
    assert len(launched) == 1 and launched[0].returncode == -9  # killed and reaped
    assert not (own_runs / jobs.LOCK_FILE).exists() and [p for p in own_runs.iterdir() if p.is_dir()] == []


def test_history_reads_metrics_from_a_real_card_when_no_done_event(own_runs: Path) -> None:
    """Issue 11: metrics live under each model in a card (``card["segmentation"]["metrics"]``), never at the top.

    A run folder with a card but no ``done`` event (a real card with held-out metrics, copied in as a run) must still
    show them.
    """
    run_dir = own_runs / "20260101-000000"
    run_dir.mkdir(parents=True)
    (run_dir / weights.CARD_FILE).write_bytes(ARCHIVED_CARD.read_bytes())
    run = jobs.find_run(run_dir.name)
    assert run.progress.final is None
    seg = run.metrics["segmentation"]["per_volume_dice_mean"]["value"]
    assert 0.5 < seg <= 1.0 and "auc" in run.metrics["grade"]
    assert [r.name for r in jobs.list_runs()] == [run_dir.name]


def test_history_metrics_survive_a_lost_done_event(index: DatasetIndex) -> None:
    run = start(index)
    jobs.wait(timeout=30)
    path = run.path / jobs.PROGRESS_FILE
    path.write_text("".join(line + "\n" for line in _lines(path) if '"done"' not in line))
    again = jobs.find_run(run.name)
    assert again.progress.final is None
    assert again.metrics["segmentation"]["dice"]["value"] == pytest.approx(0.7)  # from the card


def test_a_trainer_killed_from_outside_is_named_by_its_signal(index: DatasetIndex, own_runs: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Issue 11, defect 5: a SIGKILL is not called "out of memory?" unless the OOM killer ran."""
    import signal

    monkeypatch.setenv("FAKE_TRAINER_STEP_S", "0.2")
    run = start(index)
    wait_for_steps(run)
    pid = json.loads((own_runs / jobs.LOCK_FILE).read_text())["pid"]
    os.killpg(pid, signal.SIGKILL)  # not Cancel: e.g. `kill -9` by somebody on the server
    out = jobs.wait(timeout=30)
    assert out is not None and out.state == "failed" and out.exit_code == -9
    assert "SIGKILL (signal 9)" in out.message and "out of memory?" not in out.message
    if jobs.process.oom_kill_count() is not None:  # Linux: the OOM killer's counter says it was not memory
        assert "out-of-memory killer did not run" in out.message


def test_signal_reasons_say_memory_only_on_evidence(monkeypatch: pytest.MonkeyPatch) -> None:
    reason = jobs.process.signal_reason
    monkeypatch.setattr(jobs.process, "oom_kill_count", lambda: 5)
    assert "ran out of memory" in reason(9, 4)  # the OOM killer ran while the trainer did
    assert "did not run" in reason(9, 5) and "memory" not in reason(9, 5).replace("out-of-memory killer", "")
    assert "cannot be told" in reason(9, None)
    assert reason(15, 5) == "the trainer was stopped by SIGTERM (signal 15)"
    monkeypatch.setattr(jobs.process, "oom_kill_count", lambda: None)
    assert "cannot be told" in reason(9, 4)


def test_activate_and_restore(index: DatasetIndex) -> None:
    first = start(index)
    jobs.wait(timeout=30)
    second = start(index)
    jobs.wait(timeout=30)
    assert weights.active_dir() == second.path.resolve()
    assert jobs.activate(first.name).active and not jobs.find_run(second.name).active
    with pytest.raises(jobs.JobError, match="holds the active weights"):
        jobs.delete_run(first.name)
    jobs.delete_run(second.name)
    assert [r.name for r in jobs.list_runs()] == [first.name]
    weights.pointer_path().write_text("{corrupt")  # restoring must work whatever the pointer holds
    jobs.restore_bundled()
    assert weights.active_dir() == weights.BUNDLED_DIR and not weights.pointer_path().exists()
    with pytest.raises(jobs.JobError, match="No run named"):
        jobs.activate("../etc")


def test_pointer_write_is_atomic(index: DatasetIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    first = start(index)
    jobs.wait(timeout=30)
    second = start(index, jobs.TrainSettings(epochs=1, image_size=64, device="cpu"))
    jobs.wait(timeout=30)
    jobs.activate(first.name)
    before = weights.pointer_path().read_bytes()

    def crash(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as mp:
        mp.setattr(os, "replace", crash)
        with pytest.raises(jobs.JobError, match="disk is full"):
            jobs.activate(second.name)
    assert weights.pointer_path().read_bytes() == before  # old pointer intact, no half-written file
    assert [p.name for p in _fs.runs_dir().iterdir() if p.name.startswith(".active")] == []


def test_the_sidebar_trainer_never_inherits_torchrun_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """An app started inside a torchrun job must still launch a one-process trainer: the distributed trainer
    joins a process group whenever RANK and WORLD_SIZE are set."""
    from lggdemo.jobs.process import trainer_env
    from lggdemo.train.distributed import launched

    base = {"PATH": "/usr/bin", "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "1",
            "TORCHELASTIC_RUN_ID": "x", "LGG_CACHE_DIR": "/c"}
    env = trainer_env(base)
    assert env["PATH"] == "/usr/bin" and env["LGG_CACHE_DIR"] == "/c"
    assert env["PYTHONUNBUFFERED"] == "1" and env["HF_HUB_OFFLINE"] == "1"
    assert not {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID"} & set(env)
    monkeypatch.setattr(os, "environ", env)
    assert not launched()  # what the trainer decides by: it would run as one plain process
