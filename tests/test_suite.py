"""The suite itself: it writes only under its temp folders, and its slow tests can be left out but never are by CI.

Session-scoped fixtures run before function-scoped ones, so an isolation that is set per test comes too late
for a session fixture that decodes the dataset; the first two tests catch exactly that (``~/.cache/lggdemo``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lggdemo._fs import cache_dir, runs_dir
from lggdemo.data.arrays import slice_arrays
from lggdemo.data.kaggle import scan_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cache_seen_by_a_session_fixture(synthetic_root: Path) -> Path:
    """What a session fixture that decodes the dataset (as the trainer's shared tiny run does) writes into."""
    slice_arrays(scan_dataset(synthetic_root), 32)
    return cache_dir()


def test_session_fixtures_use_the_session_cache(cache_seen_by_a_session_fixture: Path,
                                                tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.getbasetemp()
    assert base in cache_seen_by_a_session_fixture.parents
    assert list(cache_seen_by_a_session_fixture.glob("arrays-*-32.npz"))
    assert base in runs_dir().parents


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
def test_a_test_run_writes_nothing_into_home(tmp_path: Path) -> None:
    """A fresh ``pytest`` with an empty HOME and no LGG_CACHE_DIR (as ``make test`` on a clean clone) leaves HOME empty."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("LGG_CACHE_DIR", "LGG_RUNS_DIR", "MPLCONFIGDIR", "TORCH_HOME", "XDG_CACHE_HOME")}
    env.update(HOME=str(home), PYTHONDONTWRITEBYTECODE="1")
    tests = ["tests/test_suite.py::test_session_fixtures_use_the_session_cache",
             "tests/data/test_data.py::test_area_cache_is_reused_then_invalidated_when_a_mask_changes",
             "tests/data/test_synthetic.py::test_phantoms_read_like_the_real_layout"]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--basetemp", str(tmp_path / "basetemp"), *tests],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "3 passed" in proc.stdout
    written = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    assert written == [], f"the test run wrote into HOME: {written}"


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
def test_browser_tests_are_marked_slow_and_collected_by_default() -> None:
    """One collection (each costs ~10 s of imports): with slow deselected no browser test is left, and every browser
    test file had tests to deselect."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "-m", "not slow", "tests/e2e"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert [line for line in proc.stdout.splitlines() if "::" in line] == []  # the conftest hook marks every one
    deselected = re.search(r"(\d+) deselected", proc.stdout)
    files = list((REPO_ROOT / "tests" / "e2e").glob("test_*.py"))
    assert deselected and int(deselected.group(1)) >= len(files) > 0, proc.stdout[-2000:]
    cfg = (REPO_ROOT / "pyproject.toml").read_text()
    assert ("\"slow: real training, browser runs, whole command-line, page or registration runs (CI runs them; "
            "deselect with -m 'not slow')\",") in cfg
    assert "-m" not in cfg.split("addopts", 1)[1].splitlines()[0]  # `make test` (CI) deselects nothing


def _fixtures(path: Path) -> dict[str, int]:
    """Fixture name -> line of every ``@pytest.fixture`` a file defines (``name=`` honoured)."""
    import ast

    found = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef):
            for deco in node.decorator_list:
                if "fixture" in ast.unparse(deco):
                    names = [k.value.value for k in getattr(deco, "keywords", []) if k.arg == "name"]
                    found[names[0] if names else node.name] = node.lineno
    return found


def test_no_fixture_shadows_a_conftest_fixture() -> None:
    """A test file's fixture named like a conftest one above it silently replaces it for that file (a trained run
    where the conftest means untrained weights, say): each fixture name has one meaning."""
    tests = REPO_ROOT / "tests"
    conftests = {p.parent: _fixtures(p) for p in tests.rglob("conftest.py")}
    shadowing = []
    for path in sorted(tests.rglob("*.py")):
        own = _fixtures(path)
        for folder, names in conftests.items():
            above = folder in path.parents and path != folder / "conftest.py"
            shadowing += [f"{path.relative_to(REPO_ROOT)}:{own[n]} {n!r} shadows {folder.relative_to(REPO_ROOT)}/conftest.py"
                          for n in sorted(set(own) & set(names)) if above]
    assert not shadowing, "\n".join(shadowing)
