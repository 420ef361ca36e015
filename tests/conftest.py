"""Shared fixtures: the synthetic phantom set (the suite's main fixture) and the real data when present."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one worker per core (pytest-xdist): each gets its share of the cores, set before torch is
    # imported, or every worker's OpenMP and ONNX Runtime pools would spread over all cores and fight.
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _workers)))

import lggdemo  # noqa: E402,F401  (torchvision guard)
from lggdemo.data.synthetic import PhantomConfig, generate  # noqa: E402

SHARED_LGG = Path(__file__).resolve().parents[1].parent / "shared" / "lgg"
MATERIALIZE = SHARED_LGG / "materialize.py"


#: Environment the whole session runs under: the app's caches and runs, and the caches of the libraries below it
#: that default to the home folder (matplotlib's font cache, torch hub, XDG users such as fontconfig).
_SESSION_DIRS = {"LGG_CACHE_DIR": "cache", "LGG_RUNS_DIR": "runs", "MPLCONFIGDIR": "mplconfig",
                 "TORCH_HOME": "torch-home", "XDG_CACHE_HOME": "xdg-cache"}


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Each session gets its own cache and runs folder: tests never touch ~/.cache or the project's runs/.

    Session-scoped and autouse, so it is set up before any other session fixture (pytest orders a scope's
    autouse fixtures first): a session fixture that decodes the dataset writes its ``arrays-*.npz`` here,
    not into the user's ``~/.cache/lggdemo``. Streamlit servers started by the browser tests inherit it.
    """
    base = tmp_path_factory.getbasetemp()
    with pytest.MonkeyPatch.context() as mp:
        for var, sub in _SESSION_DIRS.items():
            mp.setenv(var, str(base / sub))
        yield base


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default phantom set (12 patients), generated once per session. Treat it as read-only."""
    return generate(tmp_path_factory.mktemp("phantom"), PhantomConfig())


@pytest.fixture()
def synthetic_copy(synthetic_root: Path, tmp_path: Path) -> Path:
    """A private copy for tests that damage the tree."""
    dest = tmp_path / "kaggle_3m"
    shutil.copytree(synthetic_root, dest)
    return dest


@pytest.fixture(scope="session")
def real_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 5 real patients from ../shared/lgg, materialized; skips where ../shared is absent."""
    if not MATERIALIZE.is_file():
        pytest.skip(f"real LGG data not available ({MATERIALIZE} missing)")
    dest = tmp_path_factory.mktemp("real")
    subprocess.run([sys.executable, str(MATERIALIZE), str(dest), "--patients", "5"], check=True, capture_output=True)
    return dest / "kaggle_3m"


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete weights folder with tiny, untrained models (resnet18 U-Net at 64 px, grade crops at 64 px).

    Its card carries every metric the Predict page reads, so pages and the benchmark can run before any
    real training. Treat it as read-only.
    """
    import torch

    from lggdemo.models import weights
    from lggdemo.models.networks import GradeConfig, SegConfig, build_grade, build_segmentation

    directory = tmp_path_factory.mktemp("tiny_weights")
    torch.manual_seed(0)
    seg_cfg, grade_cfg = SegConfig(encoder="resnet18", image_size=64), GradeConfig(image_size=64)
    sha_seg = weights.save_model(directory / weights.SEG_FILE, build_segmentation(seg_cfg), seg_cfg)
    sha_grade = weights.save_model(directory / weights.GRADE_FILE, build_grade(grade_cfg), grade_cfg)

    def metric(value: float, ci: list[float] | None) -> dict[str, object]:
        return {"value": value, "ci95": ci, "n": 20, "definition": "tiny test model, untrained"}

    weights.write_card(directory, {
        "version": "tiny-test-1",
        "files": {weights.SEG_FILE: {"sha256": sha_seg, "dtype": "float16"},
                  weights.GRADE_FILE: {"sha256": sha_grade, "dtype": "float16"}},
        "segmentation": {"metrics": {"per_volume_dice_mean": metric(0.5, [0.4, 0.6]),
                                     "tumour_slice_dice": metric(0.4, None)}},
        "grade": {"metrics": {"auc": metric(0.61, [0.45, 0.77]), "age_baseline_auc": metric(0.66, [0.5, 0.8]),
                              "accuracy": metric(0.6, None), "balanced_accuracy": metric(0.58, None)}},
    })
    return directory


# --- real training belongs to the slow tier ------------------------------------------------------------------------
# `make test-fast` leaves out `slow` tests so that it stays a few minutes; a test that trains without the mark would
# quietly undo that. The trainer's loop (lggdemo.train.loop.train_loop, as the U-Net and grade trainers call it)
# fails such a test, fixtures included, whenever the session holds fast tests that reach the trainer.

_CURRENT = {"slow": True}
_TRAINERS = ("lggdemo.train.segmentation", "lggdemo.train.grade")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _CURRENT["slow"] = item.get_closest_marker("slow") is not None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    fast_files = {item.path for item in items if item.get_closest_marker("slow") is None}
    if any("lggdemo.train" in p.read_text() or "tiny_runs" in p.read_text() for p in fast_files if p.suffix == ".py"):
        guard_the_training_loop()


def guard_the_training_loop() -> None:
    import importlib

    for name in _TRAINERS:
        module = importlib.import_module(name)
        real = module.train_loop
        if getattr(real, "guarded", False):
            continue

        def guarded(*args: object, _real: object = real, **kwargs: object) -> object:
            if not _CURRENT["slow"]:
                pytest.fail("this test trains a model (the trainer's loop ran) but is not marked slow: real training "
                            "belongs to `make test`, not `make test-fast`; add @pytest.mark.slow", pytrace=False)
            return _real(*args, **kwargs)  # type: ignore[operator]

        guarded.guarded = True  # type: ignore[attr-defined]
        module.train_loop = guarded
