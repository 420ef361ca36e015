"""The teaching layer under AppTest: errors and Dice explained, the six steps, the live Threshold, uncertainty,
Compare with a second completed weights folder, the message without truth, and the guided tour on Home."""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import lggdemo.teach.steps as teach_steps
import lggdemo.ui.dataset as ui_dataset
from lggdemo.data import sources
from lggdemo.data.kaggle import scan_dataset
from lggdemo.models import weights
from lggdemo.ui.teach import NEEDS_TRUTH, STEP_TITLES, UNCERTAINTY_HOW_TO_READ

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "streamlit_app.py")
TIMEOUT = 180
THRESHOLD = "predict_teach_threshold"


@pytest.fixture()
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own runs folder: copies made here never reach another test."""
    folder = tmp_path / "runs"
    folder.mkdir()
    monkeypatch.setenv("LGG_RUNS_DIR", str(folder))
    return folder


@pytest.fixture()
def app(runs: Path, predict_app: AppTest) -> AppTest:
    """Predict on the phantoms (tests/app/conftest.py), with this test's own runs folder set up first."""
    return predict_app


def texts(at: AppTest) -> str:
    kinds = ("error", "warning", "info", "markdown", "caption", "success", "code")
    return "\n".join(str(e.value) for kind in kinds for e in getattr(at, kind))


def captions(at: AppTest) -> list[str]:
    """Every picture's caption: ``st.image`` ones and the inline figures (``ui.style.inline_image``)."""
    served = [c for im in at.get("image") for c in im.captions]  # type: ignore[attr-defined]
    inline = [html.unescape(c) for h in at.get("html")
              for c in re.findall(r"<figcaption[^>]*>(.*?)</figcaption>", h.value)]  # type: ignore[attr-defined]
    return served + inline


def dice_text(at: AppTest) -> str:
    found = [m.value for m in at.markdown if m.value.startswith("Dice at threshold")]
    assert found, "no live Dice under the Threshold slider"
    return found[0]


def test_example_shows_errors_dice_steps_and_uncertainty(app: AppTest) -> None:
    app.button(key="predict_example").click().run()
    assert not app.exception, app.exception
    assert [t.label for t in app.tabs] == list(STEP_TITLES)
    body = texts(app)
    # Errors in colour: the legend names the three kinds with their pixel counts.
    counts = {name: int(n) for name, n in re.findall(r"\*\*(true positive|false positive|false negative)\*\*\]: (\d+) px",
                                                     body)}
    assert set(counts) == {"true positive", "false positive", "false negative"}
    # Dice explained with those very counts.
    tp, fp, fn = counts["true positive"], counts["false positive"], counts["false negative"]
    assert f"2·{tp} / ({tp + fp} + {tp + fn})" in body or (tp + fp + fn == 0 and "both masks are empty" in body)
    assert "Dice explained" in body and "IoU = |A∩B| / |A∪B|" in body
    # The steps: three channels, the normalised input at the U-Net's side (64 px for the tiny model), probability,
    # threshold, post-processing and the final mask.
    caps = captions(app)
    assert {"pre-contrast", "FLAIR", "post-contrast"} <= set(caps)
    assert sum("normalised, 64×64" in c for c in caps) == 3
    assert any(c.startswith("Tumour probability per pixel") for c in caps)
    assert any(c.startswith("Final mask:") for c in caps)
    assert any("Kept (red) and removed (violet)" in c for c in caps)
    assert "it has no post-processing rule" in body  # the tiny model's min_component_px is 0 (removal: tests/teach/test_teach.py)
    assert app.slider(key=THRESHOLD).label == "Threshold" and app.slider(key=THRESHOLD).value == 0.5
    # Uncertainty, with its one sentence on how to read it.
    assert any(c.startswith("Spread of 4 test-time-augmented predictions") for c in caps)
    assert UNCERTAINTY_HOW_TO_READ in body


def test_threshold_changes_the_dice_without_running_the_network(app: AppTest,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = teach_steps.segment_logits

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(teach_steps, "segment_logits", counting)
    app.button(key="predict_example").click().run()
    assert not app.exception, app.exception
    assert len(calls) == 0, "the lesson ran the U-Net again instead of reusing the prediction's probability"
    before = dice_text(app)
    assert before.startswith("Dice at threshold 0.50:")
    # The tiny untrained U-Net's probabilities sit close to 0.5: a small move changes the mask a lot.
    app.slider(key=THRESHOLD).set_value(0.45).run()
    assert not app.exception, app.exception
    after = dice_text(app)
    assert after.startswith("Dice at threshold 0.45:") and after != before
    assert "Errors in colour (threshold 0.45" in texts(app)
    app.slider(key=THRESHOLD).set_value(0.62).run()
    assert dice_text(app) not in (before, after)
    assert len(calls) == 0, "moving the threshold ran the network"
    # Another slice reuses its own prediction too.
    slider = app.select_slider(key="predict_slice")
    first = slider.value
    slider.set_value(slider.options[-1]).run()
    app.select_slider(key="predict_slice").set_value(first).run()
    assert len(calls) == 0


def test_without_truth_the_lesson_asks_for_a_mask(app: AppTest, synthetic_root: Path) -> None:
    index = scan_dataset(synthetic_root)
    rec = index.patients[index.patient_ids[1]][10]
    app.file_uploader(key="predict_files").set_value([(rec.image_path.name, rec.image_path.read_bytes(),
                                                       "image/tiff")]).run()
    assert not app.exception, app.exception
    assert NEEDS_TRUTH in [i.value for i in app.info]
    assert "(no ground truth, so no Dice)" in texts(app)
    assert "true positive" not in texts(app)
    assert [t.label for t in app.tabs] == list(STEP_TITLES)  # the steps still work without truth


def test_compare_shows_two_masks_with_their_dice(app: AppTest, runs: Path) -> None:
    if not weights.is_complete(ROOT / "weights"):
        pytest.skip("no complete bundled weights/ to copy as a second run")
    shutil.copytree(ROOT / "weights", runs / "20260101T000000Z-copy")  # a completed run: card and matching files
    app.button(key="predict_example").click().run()
    first = app.selectbox(key="predict_teach_compare_a")
    assert "Compare" in first.label and first.value.endswith("(in use)") and "tiny-test-1" in first.value
    second = app.selectbox(key="predict_teach_compare_b")
    assert "Compare" in second.label and second.value is None
    assert "Pick two weights" in texts(app)
    other = next(o for o in second.options if o.startswith("Run 20260101T000000Z-copy"))
    second.set_value(other).run()
    assert not app.exception, app.exception
    compared = [c for c in captions(app) if re.search(r": \d+ px · Dice [01]\.\d{3}$", c)]
    assert len(compared) == 2, captions(app)
    assert "tiny-test-1 (in use)" in compared[0] and compared[1].startswith("Run 20260101T000000Z-copy")
    assert "The two masks differ on" in texts(app)


def test_home_has_a_guided_tour_with_page_links(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                synthetic_root: Path) -> None:
    monkeypatch.setenv("LGG_DATA_DIR", str(synthetic_root))
    monkeypatch.setattr(sources, "PROJECT_DATA", tmp_path / "no-project-data" / "kaggle_3m")
    monkeypatch.setattr(ui_dataset, "default_root", lambda: synthetic_root)
    at = AppTest.from_file(APP, default_timeout=90)
    at.run()
    assert not at.exception, at.exception
    assert any("tour" in h.value.lower() for h in at.subheader)
    links = [(p.proto.label, p.proto.page) for p in at.get("page_link")]  # type: ignore[attr-defined]
    tour = [(label, page) for label, page in links if re.match(r"\d\. ", label)]
    assert [label for label, _ in tour] == ["1. Browse the data", "2. Try an example", "3. Read the errors",
                                            "4. Move the threshold", "5. Retrain and compare"]
    assert [page for _, page in tour] == ["eda", "predict", "predict", "predict", "train"]


def _two_lessons(weights_dir: str) -> None:
    """What a whole-patient view would do: call the entry point with arrays, once per slice, each with its own key."""
    from pathlib import Path

    import numpy as np

    from lggdemo.inference.predictor import Predictor
    from lggdemo.ui.teach import render_slice_lesson

    predictor = Predictor.from_directory(Path(weights_dir), "cpu")
    image = np.full((256, 256, 3), 5, np.uint8)
    image[60:200, 50:210] = (70, 110, 90)
    image[100:140, 100:150, 1] = 220
    truth = np.zeros((512, 512), np.uint8)  # a truth at another size is resized to the slice
    truth[200:280, 200:300] = 1
    render_slice_lesson(image, truth, predictor, key="first")
    render_slice_lesson(image[:, :100], None, predictor, key="second")


def test_entry_point_takes_arrays_and_refuses_a_bad_slice(runs: Path, tiny_weights: Path) -> None:
    at = AppTest.from_function(_two_lessons, args=(str(tiny_weights),), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    assert [t.label for t in at.tabs] == list(STEP_TITLES)  # the second call drew no steps
    assert any("needs a 256×256 RGB slice; got uint8 (256, 100, 3)" in e.value for e in at.error)
    assert "truth 2000 px" in dice_text(at)  # 80×100 px at 512² is 40×50 px at 256²
    at.slider(key="first_threshold").set_value(0.3).run()
    assert not at.exception and dice_text(at).startswith("Dice at threshold 0.30")


def test_threshold_step_has_its_curve_beside_the_slider_and_offers_the_telling_slice(app: AppTest) -> None:
    import json

    from lggdemo.viz.threshold import TITLE

    app.button(key="predict_example").click().run()
    assert not app.exception, app.exception

    def curve() -> dict:
        found = [json.loads(c.proto.spec) for c in app.get("plotly_chart") if TITLE in c.proto.spec]  # type: ignore[attr-defined]
        assert len(found) == 1, "no Dice/area curve in the Threshold step"
        return found[0]

    spec = curve()
    names = [t.get("name") for t in spec["data"]]
    assert names == ["mask area (px)", "Dice"]
    marked = [s["x0"] for s in spec["layout"]["shapes"]]
    assert marked == [0.5]  # the chosen threshold is the model's own: one line
    app.slider(key=THRESHOLD).set_value(0.3).run()
    assert [s["x0"] for s in curve()["layout"]["shapes"]] == [0.3, 0.5]  # chosen, then the model's own (dotted)
    # the picture under the slider follows it
    assert any(c.startswith("Final mask at 0.30 against the ground truth") for c in captions(app))
    # A slice where the threshold matters more than here is offered, when there is one; the button goes there.
    jump = [b for b in app.button if b.key == "predict_teach_sensitive"]
    if jump:
        target = jump[0].label.removeprefix("Go to ")
        jump[0].click().run()
        assert not app.exception, app.exception
        assert app.select_slider(key="predict_slice").value == target
