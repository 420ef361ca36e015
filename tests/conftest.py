"""Shared fixtures: the synthetic phantom set (the suite's main fixture) and the real data when present."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import lggdemo  # noqa: E402,F401  (torchvision guard)
from lggdemo.synthetic import PhantomConfig, generate  # noqa: E402

SHARED_LGG = Path(__file__).resolve().parents[1].parent / "shared" / "lgg"
MATERIALIZE = SHARED_LGG / "materialize.py"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each session gets its own cache and runs folder: tests never touch ~/.cache or the project's runs/."""
    base = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("LGG_CACHE_DIR", str(base / "cache"))
    monkeypatch.setenv("LGG_RUNS_DIR", str(base / "runs"))


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
