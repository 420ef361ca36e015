"""Corrections on the Train page and in the sidebar under AppTest: the list (view, delete, a lost image), the
locked-server rules, "fine-tune the active weights with my N corrections", and the Compare of a real phantom
fine-tune run on its corrected slices and on its validation patients."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from tiny_runs import tiny_config

from lggdemo import corrections as corr
from lggdemo import jobs
from lggdemo._fs import runs_dir
from lggdemo.data.kaggle import load_image, load_mask, scan_dataset
from lggdemo.models import weights
from lggdemo.train import run

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "pages" / "train.py")
FAKE = ROOT / "tests" / "fixtures" / "fake_trainer.py"


def fake_command(settings: jobs.TrainSettings, **paths: object) -> list[str]:
    return [sys.executable, str(FAKE), *jobs.trainer_args(settings, **paths)]  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, synthetic_root: Path) -> None:
    monkeypatch.setenv("LGG_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("LGG_DATA_DIR", str(synthetic_root))
    monkeypatch.setattr(jobs.settings, "trainer_command", fake_command)
    yield
    if jobs.current() is not None:
        jobs.cancel(force=True)
        jobs.wait(timeout=20)


@pytest.fixture(scope="module")
def parent(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny complete weights trained on the phantoms (a split of phantom patients): what a fine-tune continues."""
    out = tmp_path_factory.mktemp("parent")
    run(tiny_config(synthetic_root, out))
    return out


def correct(dataset: Path, pid: str, number: int, **kw: object) -> corr.Correction:
    rec = next(r for r in scan_dataset(dataset).patients[pid] if r.number == number)
    truth = load_mask(rec)
    fixed = corr.paint(truth, [(30, 30), (60, 30)], 6)
    return corr.save_correction(load_image(rec), fixed, np.zeros_like(truth), weights_version="tiny",
                                source=rec.image_path.name, patient_id=pid, source_slice=number, truth=truth,
                                **kw)  # type: ignore[arg-type]


def page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def sidebar() -> AppTest:
    def script() -> None:
        import streamlit as st

        from lggdemo.ui.train.sidebar import render_training_sidebar

        with st.sidebar:
            render_training_sidebar()

    at = AppTest.from_function(script, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def captions(at: AppTest) -> list[str]:
    return [c for image in at.get("image") for c in image.captions]


def texts(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "caption", "success", "info", "warning", "error")
                     for e in getattr(at, kind))


def test_train_page_lists_views_and_deletes_corrections(synthetic_root: Path) -> None:
    at = page()
    assert any("No corrections yet" in i.value for i in at.info)
    pid = scan_dataset(synthetic_root).patient_ids[0]
    kept, lost = correct(synthetic_root, pid, 3), correct(synthetic_root, pid, 4)
    lost.image_path.unlink()
    at = page()
    table = next(d.value for d in at.dataframe if "correction" in d.value.columns)
    assert set(table["correction"]) == {kept.id, lost.id}
    assert table.set_index("correction").loc[kept.id, "status"] == "usable"
    assert any(f"Correction {lost.id} cannot be used" in w.value and "no longer there" in w.value for w in at.warning)
    assert "1 usable correction(s)" in texts(at)
    at.selectbox(key="lgg_correction_pick").set_value(kept.id).run()
    assert f"{kept.id}: the corrected mask on FLAIR" in captions(at)
    assert f"the model's 0 px → corrected {kept.provenance.corrected_area_px} px" in texts(at)
    at.selectbox(key="lgg_correction_pick").set_value(lost.id).run()
    assert not at.exception and any("cannot be shown" in w.value for w in at.warning)
    delete = next(b for b in at.button if b.key == "lgg_correction_delete")
    assert delete.disabled  # not without the confirmation
    at.checkbox(key=f"lgg_correction_delete_ok_{lost.id}").check().run()
    next(b for b in at.button if b.key == "lgg_correction_delete").click().run()
    assert not at.exception
    assert [c.id for c in corr.list_corrections()] == [kept.id]
    assert any(f"Correction {lost.id} was deleted" in s.value for s in at.success)


def test_locked_server_visitors_see_the_list_but_cannot_delete(synthetic_root: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    saved = correct(synthetic_root, scan_dataset(synthetic_root).patient_ids[0], 2)
    monkeypatch.setenv("LGG_OPERATOR_PASSWORD", "s3cret")
    at = page()
    assert saved.id in next(d.value for d in at.dataframe if "correction" in d.value.columns)["correction"].tolist()
    assert at.checkbox(key=f"lgg_correction_delete_ok_{saved.id}").disabled
    assert next(b for b in at.button if b.key == "lgg_correction_delete").disabled
    side = sidebar()
    assert not [c for c in side.checkbox if c.key == "lgg_train_fine_tune"]  # retraining with them: operator only
    assert [c.id for c in corr.list_corrections()] == [saved.id]


@pytest.mark.slow  # a real (tiny) training run
def test_sidebar_fine_tunes_the_active_weights_with_my_corrections(synthetic_root: Path, parent: Path,
                                                                     tmp_path: Path) -> None:
    active = tmp_path / "active"
    shutil.copytree(parent, active)
    weights.set_active(active)
    at = sidebar()
    box = at.checkbox(key="lgg_train_fine_tune")
    assert box.label == "Fine-tune the active weights with my 0 correction(s)" and box.disabled
    correct(synthetic_root, scan_dataset(synthetic_root).patient_ids[0], 5)
    at = sidebar()
    box = at.checkbox(key="lgg_train_fine_tune")
    assert box.label == "Fine-tune the active weights with my 1 correction(s)" and not box.disabled
    box.check()
    at.number_input(key="lgg_train_corr_weight").set_value(6)
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception, [e.value for e in at.exception]
    done = jobs.wait(timeout=30)
    assert done is not None and done.state == "succeeded", done and done.message
    s = done.settings
    assert (s["task"], s["preset"], s["corrections_weight"]) == ("seg", "refine", 6)
    assert s["init_from"] == str(active.resolve()) and s["corrections"] == str(corr.corrections_dir())
    command = jobs.find_run(done.name).path.joinpath(jobs.JOB_FILE).read_text()
    assert "--corrections" in command and "--init-from" in command


@pytest.mark.slow  # a real (tiny) training run
def test_compare_after_a_phantom_fine_tune_shows_both_views(synthetic_root: Path, parent: Path) -> None:
    card = weights.read_card(parent)
    val_pid, train_pid = card["split"]["val"][0], card["split"]["train"][0]
    correct(synthetic_root, val_pid, 5)
    correct(synthetic_root, train_pid, 5)
    out = runs_dir() / "20990101-000000"
    run(tiny_config(synthetic_root, out, task="seg", init_from=str(parent), corrections=str(corr.corrections_dir()),
                    seg_samples=32))
    assert weights.is_complete(out)
    at = page()
    at.selectbox(key="lgg_run_pick").set_value(out.name).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Compare: before and after fine-tuning on corrections" in m.value for m in at.markdown)
    labels = [m.label for m in at.metric]
    assert "Corrected slices (2): mean Dice vs the corrections" in labels
    assert f"Validation patients ({len(card['split']['val']) - 1}): mean per-volume Dice vs the truth" in labels
    ft = weights.read_card(out)["segmentation"]["fine_tune"]
    if ft["validation"]["worse"]:
        assert any("made" in w.value and ft["validation"]["worse"][0] in w.value for w in at.warning)
    else:
        assert any("No validation patient got worse" in s.value for s in at.success)
    assert any(val_pid in c.value and "Left out of the validation numbers" in c.value for c in at.caption)
    frames = {tuple(d.value.columns) for d in at.dataframe}
    assert ("correction", "patient", "source slice", "Dice before", "Dice after", "change") in frames
    assert ("patient", "Dice before", "Dice after", "change", "worse") in frames
    assert len(at.get("plotly_chart")) >= 1
    at.toggle(key=f"lgg_ft_pictures_{out.name}").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    shown = captions(at)  # each corrected slice: before, the correction, after
    assert sum(c.startswith("Before:") for c in shown) == 2 and sum(c.startswith("After:") for c in shown) == 2
    assert any(c.startswith(f"{val_pid}_") and "the correction" in c for c in shown)
