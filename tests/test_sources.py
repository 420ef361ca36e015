"""Which dataset is shown: LGG_DATA_DIR > sidebar path > data/kaggle_3m > phantoms, and which paths may be typed."""

from __future__ import annotations

from pathlib import Path

import pytest

from lggdemo import sources
from lggdemo.sources import check_user_path, choose_dataset, path_input_allowed


@pytest.fixture(autouse=True)
def _no_project_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, synthetic_root: Path) -> None:
    """Isolate from the checkout: no data/kaggle_3m, no LGG_* settings, and phantoms without regenerating them."""
    for var in ("LGG_DATA_DIR", "LGG_ALLOW_PATH_INPUT", "LGG_ALLOWED_ROOT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(sources, "PROJECT_DATA", tmp_path / "no-project-data" / "kaggle_3m")
    monkeypatch.setattr(sources, "default_root", lambda: synthetic_root)


def test_falls_back_to_phantoms_and_says_so(synthetic_root: Path) -> None:
    choice = choose_dataset()
    assert (choice.source, choice.synthetic, choice.root, choice.warning) == ("synthetic", True, synthetic_root, None)


def test_env_var_wins_over_sidebar_and_project_data(
    monkeypatch: pytest.MonkeyPatch, synthetic_root: Path, synthetic_copy: Path
) -> None:
    monkeypatch.setattr(sources, "PROJECT_DATA", synthetic_copy)
    monkeypatch.setenv("LGG_DATA_DIR", str(synthetic_root.parent))  # the folder holding kaggle_3m is accepted
    choice = choose_dataset(str(synthetic_copy))
    assert (choice.source, choice.root, choice.synthetic) == ("LGG_DATA_DIR", synthetic_root, False)


def test_sidebar_path_wins_over_project_data(
    monkeypatch: pytest.MonkeyPatch, synthetic_root: Path, synthetic_copy: Path
) -> None:
    monkeypatch.setattr(sources, "PROJECT_DATA", synthetic_copy)
    assert choose_dataset(str(synthetic_root)).source == "sidebar"
    assert choose_dataset(None).source == "project data/"
    assert choose_dataset(None).root == synthetic_copy


def test_bad_env_var_is_reported_and_the_next_source_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, synthetic_root: Path
) -> None:
    monkeypatch.setenv("LGG_DATA_DIR", str(tmp_path / "missing"))
    choice = choose_dataset(str(synthetic_root))
    assert choice.source == "sidebar"
    fallback = choose_dataset(None)
    assert fallback.source == "synthetic" and "LGG_DATA_DIR" in (fallback.warning or "")


def test_sidebar_path_without_dataset_is_reported(tmp_path: Path) -> None:
    choice = choose_dataset(str(tmp_path))
    assert choice.source == "synthetic"
    assert str(tmp_path) in (choice.warning or "") and "no kaggle_3m dataset" in (choice.warning or "")


@pytest.mark.parametrize("value", ["0", "false", "No", "off"])
def test_path_input_can_be_disabled(monkeypatch: pytest.MonkeyPatch, synthetic_root: Path, value: str) -> None:
    monkeypatch.setenv("LGG_ALLOW_PATH_INPUT", value)
    assert not path_input_allowed()
    with pytest.raises(PermissionError, match="disabled"):
        check_user_path(str(synthetic_root))
    choice = choose_dataset(str(synthetic_root))
    assert choice.source == "synthetic" and "disabled" in (choice.warning or "")


def test_path_input_is_on_by_default() -> None:
    assert path_input_allowed()


def test_allowed_root_confines_typed_paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    (allowed / "sets").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    monkeypatch.setenv("LGG_ALLOWED_ROOT", str(allowed))
    assert check_user_path(str(allowed / "sets")) == (allowed / "sets").resolve()
    assert check_user_path(str(allowed)) == allowed.resolve()
    with pytest.raises(PermissionError, match="Only folders under"):
        check_user_path(str(allowed / ".." / "secret"))  # `..` must not escape
    with pytest.raises(PermissionError):
        check_user_path(str(tmp_path / "allowed-but-not-really"))  # a shared prefix is not "under"
    with pytest.raises(PermissionError):
        check_user_path("/")


def test_allowed_root_escape_through_symlink_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (tmp_path / "secret").mkdir()
    (allowed / "link").symlink_to(tmp_path / "secret")
    monkeypatch.setenv("LGG_ALLOWED_ROOT", str(allowed))
    with pytest.raises(PermissionError):
        check_user_path(str(allowed / "link"))


def test_dataset_outside_allowed_root_is_not_opened(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, synthetic_root: Path
) -> None:
    monkeypatch.setenv("LGG_ALLOWED_ROOT", str(tmp_path))
    choice = choose_dataset(str(synthetic_root))
    assert choice.source == "synthetic" and "Only folders under" in (choice.warning or "")
