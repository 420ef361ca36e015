"""Which dataset is shown: LGG_DATA_DIR > sidebar path > data/kaggle_3m > phantoms, and which paths may be typed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lggdemo.data import sources
from lggdemo.data.sources import check_user_path, choose_dataset, path_input_allowed


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


# --- LGG_ALLOWED_ROOT holds inside an allowed dataset too: symlinks that leave it are not followed ---------------


@pytest.fixture()
def confined(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, synthetic_root: Path) -> tuple[Path, Path]:
    """An allowed root holding a copy of the phantoms, a folder outside it with a second copy (the "secret")."""
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    shutil.copytree(synthetic_root, allowed / "set" / "kaggle_3m")
    shutil.copytree(synthetic_root, outside / "kaggle_3m")
    monkeypatch.setenv("LGG_ALLOWED_ROOT", str(allowed))
    return allowed / "set" / "kaggle_3m", outside / "kaggle_3m"


def _problems_of(index: object) -> str:
    return "\n".join(str(p) for p in index.problems)  # type: ignore[attr-defined]


def test_symlinked_patient_folder_leaving_the_root_is_skipped_and_listed(confined: tuple[Path, Path]) -> None:
    from lggdemo.data.kaggle import scan_dataset

    inside, outside = confined
    pids = sorted(p.name for p in inside.iterdir() if p.is_dir())
    victim = pids[0]
    shutil.rmtree(inside / victim)
    (inside / victim).symlink_to(outside / victim, target_is_directory=True)

    choice = choose_dataset(str(inside.parent))
    assert choice.source == "sidebar"
    index = scan_dataset(choice.root)
    assert victim not in index.patients and sorted(index.patients) == pids[1:]
    assert f"{victim}: is a symlink that leaves the allowed root; patient skipped" in _problems_of(index)
    assert all(r.image_path.resolve().is_relative_to(inside.parents[1].resolve()) for r in index.slices())


def test_symlinked_slice_and_data_csv_leaving_the_root_are_skipped_and_listed(confined: tuple[Path, Path]) -> None:
    from lggdemo.data.kaggle import DatasetError, load_image, scan_dataset

    inside, outside = confined
    pid = sorted(p.name for p in inside.iterdir() if p.is_dir())[1]
    n_before = len(list((inside / pid).glob("*_mask.tif")))
    image = inside / pid / f"{pid}_2.tif"
    image.unlink()
    image.symlink_to(outside / pid / f"{pid}_2.tif")
    (inside / "data.csv").unlink()
    (inside / "data.csv").symlink_to(outside / "data.csv")

    index = scan_dataset(choose_dataset(str(inside)).root)
    text = _problems_of(index)
    assert f"{pid}/{pid}_2.tif: is a symlink that leaves the allowed root; slice skipped" in text
    assert "data.csv: is a symlink that leaves the allowed root; clinical data ignored" in text
    assert [r.number for r in index.patients[pid]] == [n for n in range(1, n_before + 1) if n != 2]
    assert index.clinical.empty, "data.csv behind the link was read"

    # A link swapped in after the scan is refused when the slice is opened.
    rec = index.patients[pid][0]
    rec.image_path.unlink()
    rec.image_path.symlink_to(outside / pid / rec.image_path.name)
    with pytest.raises(DatasetError, match="leaves the allowed root"):
        load_image(rec)


def test_symlinks_inside_the_root_and_unconfined_datasets_still_work(
    confined: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lggdemo.data.kaggle import scan_dataset

    inside, outside = confined
    pid = sorted(p.name for p in inside.iterdir() if p.is_dir())[0]
    moved = inside.parents[1] / "elsewhere-inside" / pid
    moved.parent.mkdir()
    (inside / pid).rename(moved)
    (inside / pid).symlink_to(moved, target_is_directory=True)  # a link that stays inside the root is fine
    index = scan_dataset(inside)
    assert pid in index.patients and not index.problems
    # The operator's own LGG_DATA_DIR outside the allowed root is not confined (only typed paths are).
    (outside / pid).rename(outside.parent / pid)
    (outside / pid).symlink_to(outside.parent / pid, target_is_directory=True)
    monkeypatch.setenv("LGG_DATA_DIR", str(outside))
    choice = choose_dataset()
    assert choice.source == "LGG_DATA_DIR" and pid in scan_dataset(choice.root).patients
