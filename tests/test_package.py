"""The package's metadata: ``pip install .`` gives the six commands, with requirements.txt as the one list of pins."""

from __future__ import annotations

import ast
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
COMMANDS = {"lggdemo-predict", "lggdemo-evaluate", "lggdemo-train", "lggdemo-bench", "lggdemo-crossval",
            "lggdemo-compare"}


def test_it_builds_with_setuptools_and_reads_its_pins_from_requirements_txt() -> None:
    assert PYPROJECT["build-system"]["build-backend"] == "setuptools.build_meta"
    assert "dependencies" not in PYPROJECT["project"], "pins live in requirements.txt only"
    assert PYPROJECT["project"]["dynamic"] == ["dependencies"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["dependencies"]["file"] == ["requirements.txt"]
    pins = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    pins = [p for p in pins if p]
    assert pins and all("==" in p for p in pins), [p for p in pins if "==" not in p]
    assert "torch==2.13.0" in pins  # the pin that keeps pip from choosing a CUDA torch


def test_every_command_names_a_function_of_its_module() -> None:
    """Read on the source (importing the six would load torch for seconds); ``--help`` runs in test_predict_cli."""
    scripts = PYPROJECT["project"]["scripts"]
    assert set(scripts) == COMMANDS
    for name, target in scripts.items():
        module, _, attr = target.partition(":")
        path = ROOT.joinpath(*module.split(".")).with_suffix(".py")
        functions = {n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)}
        assert attr in functions, f"{name}: {target}"


def test_the_old_top_level_shims_are_gone() -> None:
    """``python -m`` runs the real modules (``lggdemo.inference.cli``, ...); the installed commands replace the shims."""
    for shim in ("predict", "evaluate", "crossval"):
        assert not (ROOT / "lggdemo" / f"{shim}.py").exists()
