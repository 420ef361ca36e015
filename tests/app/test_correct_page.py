"""The mask editor on Predict under AppTest: strokes, undo, reset, delete a piece, save, the locked server, and
the whole-patient view. The drawing component cannot be driven here, so its function is replaced by one that
hands the editor a Fabric drawing, exactly as the component reports a gesture (the browser test drives the real one)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from lggdemo import corrections as corr
from lggdemo.data.kaggle import scan_dataset
from lggdemo.metrics.segmentation import dice as corr_dice
from lggdemo.ui.access import UNLOCKED_KEY
from lggdemo.ui.predict import correct

#: A drag across the middle of the 512² canvas with a radius-4 brush (16 canvas px wide).
STROKE = {"objects": [{"type": "Path", "strokeWidth": 16, "path": [["M", 96, 256], ["L", 416, 256]]}]}


class FakeCanvas:
    """Stands in for ``correct._canvas``: returns ``pending`` once (one gesture), then nothing."""

    def __init__(self) -> None:
        self.pending: dict[str, Any] | None = None
        self.calls: list[tuple[bytes, str, int, str]] = []

    def __call__(self, background: bytes, tool: str, brush_px: int, key: str) -> dict[str, Any] | None:
        self.calls.append((background, tool, brush_px, key))
        drawing, self.pending = self.pending, None
        return drawing


@pytest.fixture(autouse=True)
def _own_runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Corrections land under LGG_RUNS_DIR: each test gets its own (before the page fixture activates weights)."""
    monkeypatch.setenv("LGG_RUNS_DIR", str(tmp_path / "runs"))


@pytest.fixture()
def canvas(monkeypatch: pytest.MonkeyPatch) -> FakeCanvas:
    fake = FakeCanvas()
    monkeypatch.setattr(correct, "_canvas", fake)
    return fake


def metric(at: AppTest, label: str) -> Any:
    found = [m for m in at.metric if m.label == label]
    assert found, [m.label for m in at.metric]
    return found[0]


def area(at: AppTest) -> int:
    return int(re.match(r"(\d+) px", metric(at, "Tumour area (corrected)").value).group(1))


def draw(at: AppTest, fake: FakeCanvas, drawing: dict[str, Any]) -> AppTest:
    fake.pending = drawing
    at.run()
    assert not at.exception, at.exception
    return at


def open_editor(at: AppTest, key: str = "predict_correct") -> AppTest:
    at.toggle(key=f"{key}_open").set_value(True).run()
    assert not at.exception, at.exception
    return at


def history(at: AppTest, name: str) -> corr.EditHistory:
    return at.session_state[correct.STATE_KEY][name].history


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
def test_editor_strokes_undo_reset_delete_and_save(predict_app: AppTest, canvas: FakeCanvas,
                                                   synthetic_root: Path) -> None:
    at = predict_app
    at.button(key="predict_example").click().run()
    assert "Correct this mask" in [t.label for t in at.toggle]
    assert not canvas.calls  # closed: no canvas
    open_editor(at)
    assert at.radio(key="predict_correct_tool").value == "Brush"  # brush chosen when the editor opens
    model = history(at, "predict_correct:0").original
    model_area = area(at)
    assert model_area == int(model.sum())
    dice_before = metric(at, "Dice vs ground truth (corrected)").value
    assert at.button(key="predict_correct_undo").disabled
    draw(at, canvas, STROKE)
    painted = corr.paint(model, [(48, 128), (208, 128)], 4)  # the canvas is twice the slice's size
    assert area(at) == int(painted.sum()) > model_area
    truth = at.session_state["predict_batch"].slices[0].truth
    shown = metric(at, "Dice vs ground truth (corrected)")
    fixed, before = corr_dice(painted, truth), corr_dice(model, truth)
    assert shown.value == f"{fixed:.3f}" and shown.delta == f"{fixed - before:+.3f} vs the model's {before:.3f}"
    assert dice_before == f"{before:.3f}"
    assert f"vs the model's {model_area} px" in metric(at, "Tumour area (corrected)").delta
    assert "IoU (corrected)" in [m.label for m in at.metric]
    assert any("1 edit(s)" in c.value for c in at.caption)
    assert "Download corrected mask (PNG)" in [b.label for b in at.get("download_button")]
    assert len({c[3] for c in canvas.calls}) == 2  # a fresh canvas after the gesture

    at.button(key="predict_correct_undo").click().run()
    assert area(at) == model_area
    draw(at, canvas, STROKE)
    at.radio(key="predict_correct_tool").set_value("Eraser").run()
    draw(at, canvas, {"objects": [{"type": "Path", "strokeWidth": 16, "path": [["M", 96, 256], ["L", 256, 256]]}]})
    erased = corr.paint(painted, [(48, 128), (128, 128)], 4, erase=True)
    assert area(at) == int(erased.sum())
    at.radio(key="predict_correct_tool").set_value("Delete a piece").run()
    draw(at, canvas, {"objects": [{"type": "Circle", "left": 400 - 6, "top": 256, "radius": 4, "strokeWidth": 4,
                                   "originX": "left", "originY": "center"}]})
    deleted = corr.delete_component(erased, (200, 128))
    assert area(at) == int(deleted.sum()) < int(erased.sum())
    assert history(at, "predict_correct:0").n_edits == 3

    at.button(key="predict_correct_save").click().run()
    assert not at.exception
    saved = corr.list_corrections()
    assert len(saved) == 1 and any("Saved as training example" in s.value for s in at.success)
    prov = saved[0].provenance
    index = scan_dataset(synthetic_root)
    assert prov.weights_version == "tiny-test-1" and prov.mode == "slice" and prov.patient_id in index.patient_ids
    assert prov.original_area_px == model_area and prov.corrected_area_px == int(deleted.sum())
    assert prov.dice_corrected is not None and prov.edits == 3
    assert prov.clinical.get("grade") == index.clinical_for(prov.patient_id).grade  # from the dataset's record
    assert saved[0].image_path.parent.parent == corr.corrections_dir()  # under LGG_RUNS_DIR, not the dataset

    at.button(key="predict_correct_reset").click().run()
    assert area(at) == model_area and at.button(key="predict_correct_reset").disabled


def test_channel_switch_redraws_the_editor_and_a_click_on_nothing_says_so(predict_app: AppTest,
                                                                         canvas: FakeCanvas) -> None:
    at = predict_app
    at.button(key="predict_example").click().run()
    open_editor(at)
    flair = canvas.calls[-1][0]
    at.radio(key="predict_channel").set_value("pre-contrast").run()
    assert not at.exception and canvas.calls[-1][0] != flair
    at.radio(key="predict_correct_tool").set_value("Eraser").run()
    draw(at, canvas, {"objects": [{"type": "Path", "strokeWidth": 80, "path": [["M", 40, 40]]}]})  # clear a corner
    cleared = history(at, "predict_correct:0").current
    at.radio(key="predict_correct_tool").set_value("Delete a piece").run()
    draw(at, canvas, {"objects": [{"type": "Circle", "left": 35, "top": 40, "radius": 4, "strokeWidth": 2,
                                   "originX": "left", "originY": "center"}]})
    assert any("No piece of the mask there" in i.value for i in at.info)
    assert history(at, "predict_correct:0").current is cleared  # nothing changed, no undo step


def test_locked_server_visitors_edit_and_download_but_cannot_save(predict_app: AppTest, canvas: FakeCanvas,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LGG_OPERATOR_PASSWORD", "secret")
    at = predict_app
    at.button(key="predict_example").click().run()
    open_editor(at)
    before = history(at, "predict_correct:0").original
    draw(at, canvas, STROKE)
    assert area(at) == int(corr.paint(before, [(48, 128), (208, 128)], 4).sum())
    assert "Download corrected mask (PNG)" in [b.label for b in at.get("download_button")]
    assert at.button(key="predict_correct_save").disabled
    assert any(correct.SAVE_LOCKED in c.value for c in at.caption)
    at.session_state[UNLOCKED_KEY] = True  # the operator, unlocked in this tab: may save
    at.run()
    at.button(key="predict_correct_save").click().run()
    assert len(corr.list_corrections()) == 1
    monkeypatch.setenv("LGG_READ_ONLY", "1")
    monkeypatch.delenv("LGG_OPERATOR_PASSWORD")
    at.run()
    assert at.button(key="predict_correct_save").disabled


def test_unwritable_corrections_folder_is_a_message(predict_app: AppTest, canvas: FakeCanvas, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = tmp_path / "runs-file"
    blocked.write_text("not a folder")
    monkeypatch.setattr(corr.store, "corrections_dir", lambda: blocked / "corrections")
    at = predict_app
    at.button(key="predict_example").click().run()
    open_editor(at)
    draw(at, canvas, STROKE)
    at.button(key="predict_correct_save").click().run()
    assert not at.exception
    assert any("Not saved" in e.value and "cannot be written" in e.value for e in at.error)


def test_whole_patient_editor_volume_and_nifti(predict_app: AppTest, canvas: FakeCanvas) -> None:
    at = predict_app
    at.radio(key="predict_input_mode").set_value("Whole patient").run()
    at.button(key="patient_example").click().run()
    assert not at.exception, at.exception
    open_editor(at, "patient_correct")
    volume = metric(at, "Tumour volume (corrected)")
    assert "voxels" in volume.value and "no voxel spacing" in volume.delta
    before = int(volume.value.split()[0])
    name = next(k for k in at.session_state[correct.STATE_KEY] if k.startswith("patient_correct:"))
    model = history(at, name).original
    draw(at, canvas, STROKE)
    after = int(metric(at, "Tumour volume (corrected)").value.split()[0])
    assert after - before == int(corr.paint(model, [(48, 128), (208, 128)], 4).sum() - model.sum())
    assert "Download corrected mask (NIfTI)" in [b.label for b in at.get("download_button")]
    assert any("Per-volume Dice vs the uploaded masks: corrected" in c.value for c in at.caption)
    # another slice keeps its own (empty) history; the volume still counts the first slice's edit
    slider = next(s for s in at.slider if s.label == "Slice (inferior → superior)")
    slider.set_value(1).run()
    assert int(metric(at, "Tumour volume (corrected)").value.split()[0]) == after
    assert at.button(key="patient_correct_undo").disabled
