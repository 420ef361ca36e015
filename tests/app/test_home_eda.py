"""Home and Dataset EDA run end to end in Streamlit's AppTest, on the phantoms and on broken trees.

AppTest (Streamlit 1.67) keeps the entry script's sidebar in its element tree only on an AppTest's first
run; in every later run (a rerun, ``switch_page``) it is missing even in a bare two-page app, although a
browser shows it. So sidebar checks use a fresh AppTest's first run; the browser test checks /eda's sidebar.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

import lggdemo.ui.dataset as ui_dataset
from lggdemo.data import sources
from lggdemo.data.kaggle import scan_dataset
from lggdemo.ui.access import UNLOCKED_KEY

APP = str(Path(__file__).resolve().parents[2] / "streamlit_app.py")


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, synthetic_root: Path) -> None:
    """No project data/, no operator settings, and the phantoms from the session fixture (no regeneration)."""
    for var in ("LGG_DATA_DIR", "LGG_ALLOW_PATH_INPUT", "LGG_ALLOWED_ROOT", "LGG_OPERATOR_PASSWORD", "LGG_READ_ONLY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(sources, "PROJECT_DATA", tmp_path / "no-project-data" / "kaggle_3m")
    monkeypatch.setattr(sources, "default_root", lambda: synthetic_root)
    monkeypatch.setattr(ui_dataset, "default_root", lambda: synthetic_root)


def _app(typed_path: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    if typed_path is not None:
        at.session_state[ui_dataset.PATH_KEY] = typed_path
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _sidebar_text(at: AppTest) -> str:
    parts = [m.value for m in at.sidebar.markdown] + [c.value for c in at.sidebar.caption]
    parts += [w.value for w in at.sidebar.warning] + [i.value for i in at.sidebar.info]
    return "\n".join(str(p) for p in parts)


def _eda(at: AppTest) -> AppTest:
    at.switch_page("pages/eda.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_home_says_what_is_shown(monkeypatch: pytest.MonkeyPatch, synthetic_root: Path) -> None:
    monkeypatch.setenv("LGG_DATA_DIR", str(synthetic_root))
    at = _app()
    assert "glioma" in at.title[0].value.lower()
    assert "Not for diagnosis" in at.error[0].value
    main = "\n".join(m.value for m in at.main.markdown)
    n_slices = scan_dataset(synthetic_root).n_slices
    assert f"Synthetic phantoms (not patient data): 12 patients, {n_slices} slices" in main
    assert "**Device:** CPU" in main or "**Device:** CUDA" in main or "**Device:** Apple" in main
    sidebar = _sidebar_text(at)
    assert "LGG_DATA_DIR" in sidebar and "Device:" in sidebar and "not a medical device" in sidebar
    assert "phantom scans, not patient data" in sidebar
    assert len(at.sidebar.text_input) == 1


def test_eda_draws_charts_tables_and_the_slice_browser(monkeypatch: pytest.MonkeyPatch, synthetic_root: Path) -> None:
    monkeypatch.setenv("LGG_DATA_DIR", str(synthetic_root))
    at = _eda(_app())
    index = scan_dataset(synthetic_root)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Patients"] == "12" and metrics["Slices"] == str(index.n_slices)
    assert len(at.get("plotly_chart")) == 7
    assert len(at.get("image")) == 3, "pre-contrast, FLAIR and post-contrast side by side"
    assert len(at.dataframe) == 1 and at.dataframe[0].value.shape[0] == 12  # no problems table: clean set
    assert not at.warning

    last = index.patient_ids[-1]  # the blank clinical row
    at.selectbox(key="eda_patient").select(last).run()
    assert not at.exception
    assert any(last in c.value and "grade unknown" in c.value for c in at.caption)
    at.select_slider(key=f"eda_slice_{last}").set_value(1).run()
    at.slider(key="eda_opacity").set_value(1.0).run()
    assert not at.exception
    assert any(f"{last} · slice 1 of {len(index.patients[last])}" in c.value for c in at.caption)


def test_eda_lists_problems_of_a_malformed_tree(monkeypatch: pytest.MonkeyPatch, synthetic_copy: Path) -> None:
    a, b = sorted(p.name for p in synthetic_copy.iterdir() if p.is_dir())[:2]
    (synthetic_copy / a / f"{a}_1_mask.tif").unlink()
    Image.new("RGB", (64, 64)).save(synthetic_copy / b / f"{b}_1.tif")
    monkeypatch.setenv("LGG_DATA_DIR", str(synthetic_copy))
    at = _eda(_app())
    assert "2 problem(s)" in at.warning[0].value
    problems = at.dataframe[0].value
    assert list(problems["where"]) == [f"{a}/{a}_1.tif", f"{b}/{b}_1.tif"]
    assert len(at.get("plotly_chart")) == 7, "the good patients are still charted"
    assert "2 problem(s)" in _sidebar_text(_app())


def test_unusable_env_folder_falls_back_to_phantoms_with_a_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bad = tmp_path / "kaggle_3m"
    (bad / "TCGA_AA_0001_20000101").mkdir(parents=True)
    (bad / "data.csv").write_text("Patient\nTCGA_AA_0001\n")
    monkeypatch.setenv("LGG_DATA_DIR", str(bad))
    sidebar = _sidebar_text(_app())
    assert "could not be used" in sidebar and "no usable slices" in sidebar
    assert "Synthetic phantoms" in sidebar
    at = _eda(_app())
    assert {m.label: m.value for m in at.metric}["Patients"] == "12"


def test_sidebar_path_is_used_and_refusals_are_shown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, synthetic_copy: Path
) -> None:
    assert "no real dataset found" in _sidebar_text(_app())
    sidebar = _sidebar_text(_app(typed_path=str(synthetic_copy.parent)))
    assert "typed in the sidebar" in sidebar and "Synthetic phantoms" in sidebar

    monkeypatch.setenv("LGG_ALLOWED_ROOT", str(tmp_path / "elsewhere"))
    sidebar = _sidebar_text(_app(typed_path=str(synthetic_copy)))
    assert "Only folders under" in sidebar and "no real dataset found" in sidebar
    monkeypatch.delenv("LGG_ALLOWED_ROOT")

    at = _app()  # typing into the widget, then switching page: the path is kept
    at.sidebar.text_input(key=ui_dataset.PATH_WIDGET_KEY).input(str(synthetic_copy)).run()
    assert not at.exception and any("typed in the sidebar" in m.value for m in at.main.caption)
    at.switch_page("pages/eda.py").run()
    assert not at.exception and any("typed in the sidebar" in c.value for c in at.caption)


def test_path_input_hidden_when_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LGG_ALLOW_PATH_INPUT", "0")
    at = _app()
    assert len(at.sidebar.text_input) == 0
    assert "type its folder" not in _sidebar_text(at)


@pytest.mark.parametrize("lock", [("LGG_OPERATOR_PASSWORD", "s3cret"), ("LGG_READ_ONLY", "1")])
def test_a_locked_server_shows_the_dataset_folder_box_to_the_operator_only(
        monkeypatch: pytest.MonkeyPatch, synthetic_copy: Path, lock: tuple[str, str]) -> None:
    monkeypatch.setenv(*lock)
    visitor = _app(typed_path=str(synthetic_copy))  # a path left in the session is ignored as well
    assert not [w for w in visitor.sidebar.text_input if w.key == ui_dataset.PATH_WIDGET_KEY]
    assert "phantom" in _sidebar_text(visitor).lower()
    if lock[0] == "LGG_OPERATOR_PASSWORD":
        operator = AppTest.from_file(APP, default_timeout=90)
        operator.session_state[UNLOCKED_KEY] = True  # what the sidebar's Unlock sets for this tab
        operator.run()
        assert [w for w in operator.sidebar.text_input if w.key == ui_dataset.PATH_WIDGET_KEY]
    monkeypatch.setenv("LGG_ALLOW_PATH_INPUT", "1")  # the operator opens it to visitors on purpose
    assert [w for w in _app().sidebar.text_input if w.key == ui_dataset.PATH_WIDGET_KEY]


def test_rescan_picks_up_a_changed_tree(monkeypatch: pytest.MonkeyPatch, synthetic_copy: Path) -> None:
    monkeypatch.setenv("LGG_DATA_DIR", str(synthetic_copy))
    folders = sorted(p for p in synthetic_copy.iterdir() if p.is_dir())
    at = _app()
    assert "12 patients" in _sidebar_text(at) and at.sidebar.button[0].label == "Rescan dataset"
    shutil.rmtree(folders[0])
    at.sidebar.button[0].click().run()
    assert not at.exception and any("11 patients" in m.value for m in at.main.markdown)
    shutil.rmtree(folders[1])
    at.run()  # a removed folder changes the tree signature: no button needed
    assert not at.exception and any("10 patients" in m.value for m in at.main.markdown)
    at = _eda(at)
    assert {m.label: m.value for m in at.metric}["Patients"] == "10"


def test_source_line_names_real_folders_only(tmp_path: Path) -> None:
    real = sources.DatasetChoice(tmp_path, "LGG_DATA_DIR", False)
    assert str(tmp_path) in ui_dataset.source_line(real) and "LGG_DATA_DIR" in ui_dataset.source_line(real)
    phantoms = sources.DatasetChoice(tmp_path, "sidebar", True)
    assert str(tmp_path) not in ui_dataset.source_line(phantoms) and "typed" in ui_dataset.source_line(phantoms)
