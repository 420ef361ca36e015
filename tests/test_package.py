"""The package's metadata: ``pip install .`` gives the six commands, with requirements.txt as the one list of pins;
``python -m lggdemo.<name>`` runs the same function as ``lggdemo-<name>``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
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
    """Read on the source (importing the six would load torch for seconds); ``--help`` runs below."""
    scripts = PYPROJECT["project"]["scripts"]
    assert set(scripts) == COMMANDS
    for name, target in scripts.items():
        module, _, attr = target.partition(":")
        path = ROOT.joinpath(*module.split(".")).with_suffix(".py")
        functions = {n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)}
        assert attr in functions, f"{name}: {target}"


def _python_m_runs(name: str) -> str:
    """``module:function`` that ``python -m lggdemo.<name>`` calls, read on the source.

    A command is a top-level module (``lggdemo/predict.py``) whose ``__main__`` guard calls its own function, or a
    package (``lggdemo/train/``) whose ``__main__.py`` imports the function from the package's ``cli`` and calls it.
    """
    module_file = ROOT / "lggdemo" / f"{name}.py"
    if module_file.is_file():
        module, tree = f"lggdemo.{name}", ast.parse(module_file.read_text())
        guards = [n for n in tree.body if isinstance(n, ast.If) and "__name__" in ast.unparse(n.test)]
        assert len(guards) == 1, f"{module_file}: no `if __name__ == '__main__'` guard"
        calls = [n.func.id for n in ast.walk(guards[0]) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                 and n.func.id != "SystemExit"]
        return f"{module}:{calls[0]}"
    tree = ast.parse((ROOT / "lggdemo" / name / "__main__.py").read_text())
    (imported,) = [n for n in tree.body if isinstance(n, ast.ImportFrom)]
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert imported.names[0].name in called
    return f"{imported.module}:{imported.names[0].name}"


def test_python_m_and_the_installed_command_run_the_same_function() -> None:
    """One path per command: no re-export shim between ``lggdemo-predict`` and ``python -m lggdemo.predict``."""
    scripts = PYPROJECT["project"]["scripts"]
    for command, target in scripts.items():
        assert _python_m_runs(command.removeprefix("lggdemo-")) == target, command


#: what each command's ``--help`` shows besides its usage line: options only that command has
HELP = {
    "predict": ("nifti, dicom-seg, png, prob-nifti, pdf", "--tree", "--manifest", "--shard"),
    "evaluate": ("--data", "--split", "--spacing"),
    "crossval": ("--grade", "--compare", "--record-in"),
    "compare": ("BASELINE FOLLOWUP", "--followup-date", "--spacing"),
    "train": ("--preset", "--fold", "--init-from"),
    "bench": ("--infer", "--load", "--batch"),
}


def test_help_covers_every_command() -> None:
    assert {f"lggdemo-{name}" for name in HELP} == COMMANDS


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
@pytest.mark.parametrize("name", sorted(HELP))
def test_runs_as_python_m(name: str) -> None:
    """``python -m lggdemo.<name> --help`` exits 0 with the command's usage (each imports torch: seconds)."""
    done = subprocess.run([sys.executable, "-m", f"lggdemo.{name}", "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    text = " ".join(done.stdout.split())
    assert text.startswith(f"usage: lggdemo-{name} "), text[:200]
    missing = [s for s in HELP[name] if s not in text]
    assert not missing, missing
