"""Every module, function, command and file the docs name exists: a newcomer following a reference lands somewhere.

Read on the source, nothing imported: the README, ``docs/*.md``, ``weights/README.md``, every readme under
``lggdemo/``, and the docstrings and comments of ``lggdemo/`` and ``tests/``. Checked:

- dotted names such as ``lggdemo.models.card.ModelCard`` (a module, then what it defines: functions, classes,
  their members);
- file paths (``lggdemo/models/forward.py``, ``tests/patient/test_volume.py``, ``docs/formats.md``) and the
  package-relative form the readmes use (``inference/wholepatient.predict_volume``, ``readers/kaggle.py``);
- Markdown links and their ``#anchors``;
- the installed commands (``lggdemo-predict``...) against ``pyproject.toml``.

A failure names the file and line of each broken reference. Past protocols in ``docs/experiments/`` are records
of their time and are not checked.
"""

from __future__ import annotations

import ast
import io
import os
import re
import tokenize
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lggdemo"
TOP_DIRS = ("lggdemo", "tests", "docs", "weights", "pages", ".ci", ".streamlit")
#: Paths the docs name that exist only at run time, never in a checkout.
RUNTIME_PATHS = {"data/kaggle_3m", "runs/corrections", "runs/", "tests/e2e/screenshots"}
#: Files the docs name that live beside the checkout, not in it (``../shared/lgg/materialize.py``).
OUTSIDE_FILES = {"materialize.py"}

DOTTED = re.compile(r"(?<![\w./-])lggdemo(?:\.[A-Za-z_]\w*)+")
COMMAND = re.compile(r"(?<![\w./-])lggdemo-[a-z]+\b")
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")
#: a path with a slash or a .py/.md suffix, optionally followed by ``.attribute`` (``models/forward.predict_patient_masks``)
PATH = re.compile(r"(?<![\w./$~<-])((?:\.\./)*[A-Za-z_.][\w.-]*(?:/[\w.-]+)*/?)")


def _subpackages() -> set[str]:
    return {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}


SUBPACKAGES = _subpackages()


# --- where references are written --------------------------------------------------------------------------------


def _doc_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "weights" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    files += sorted(PACKAGE.rglob("*.md"))
    return [f for f in files if f.is_file()]


def _texts() -> Iterator[tuple[Path, int, str]]:
    """(file, first line, text) of every doc page, docstring and comment."""
    for path in _doc_files():
        yield path, 1, path.read_text()
    for path in sorted([*PACKAGE.rglob("*.py"), *(ROOT / "tests").rglob("*.py")]):
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body
                if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                        and isinstance(body[0].value.value, str):
                    yield path, body[0].lineno, body[0].value.value
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                yield path, tok.start[0], tok.string


# --- what exists --------------------------------------------------------------------------------------------------


def _module_file(dotted: str) -> Path | None:
    base = ROOT.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _names_in(body: list[ast.stmt]) -> dict[str, ast.AST]:
    """Names a module or class body defines, looking through if/try/with blocks (``TYPE_CHECKING`` imports too)."""
    names: dict[str, ast.AST] = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                for t in ast.walk(target):
                    if isinstance(t, ast.Name):
                        names[t.id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names[(alias.asname or alias.name).split(".")[0]] = node
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for block in ("body", "orelse", "finalbody"):
                names.update(_names_in(getattr(node, block, []) or []))
            for handler in getattr(node, "handlers", []):
                names.update(_names_in(handler.body))
    return names


@cache
def _module_names(path: Path) -> dict[str, ast.AST]:
    return _names_in(ast.parse(path.read_text()).body)


def _attributes_resolve(module: Path, attrs: list[str]) -> bool:
    names = _module_names(module)
    for attr in attrs:
        node = names.get(attr)
        if node is None:
            return False
        if not isinstance(node, ast.ClassDef):
            return True  # a function or a value: what follows is not checked
        names = _names_in(node.body)
    return True


def dotted_problem(name: str) -> str | None:
    """Why a dotted name (``lggdemo.models.card.ModelCard``) does not resolve, or None."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        module = _module_file(".".join(parts[:cut]))
        if module is not None:
            if _attributes_resolve(module, parts[cut:]):
                return None
            if module.name == "__init__.py" and cut == 1:
                return "no such module"
            return f"{'.'.join(parts[cut:])} is not defined in {module.relative_to(ROOT)}"
    return "no such module"


@cache
def _project_file_names() -> frozenset[str]:
    names = set()
    for _folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("__pycache__", "node_modules")]
        names.update(files)
    return frozenset(names)


def _anchors(md: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    out = set()
    for line in md.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def link_problem(target: str, source: Path) -> str | None:
    if re.match(r"^[a-z]+:", target) or target.startswith("#") and source.suffix != ".md":
        return None
    path, _, anchor = target.partition("#")
    file = (source.parent / path).resolve() if path else source
    if ROOT not in file.parents and file != ROOT and ROOT.parent / "shared" in (file, *file.parents):
        return None  # ../shared lies beside the checkout only where the data is installed
    if not file.exists():
        return "no such file"
    if anchor and file.suffix == ".md" and anchor not in _anchors(file):
        return f"no heading #{anchor} in {file.relative_to(ROOT)}"
    return None


def path_problem(ref: str, source: Path) -> str | None:
    """Why a path (maybe followed by ``.attribute``) named in ``source`` does not exist, or None.

    Tried from the checkout, from ``lggdemo/``, and from the citing file's folder and each folder above it.
    """
    if ref.rstrip("/") in {p.rstrip("/") for p in RUNTIME_PATHS}:
        return None
    if ref.startswith("../shared"):  # beside the checkout where the data is installed; CI's clone may lack it
        return None
    if "/" not in ref:  # a bare file name: somewhere in the project
        if ref in OUTSIDE_FILES or ref in _project_file_names():
            return None
        return "no file of that name in the project"
    bases = [ROOT, PACKAGE, *[p for p in source.parents if ROOT in (p, *p.parents)]]
    file_part, attrs = ref, []
    if not re.search(r"\.(py|md|json|txt|toml|png|cfg|sh|yml|yaml)$", ref) and "." in ref.rsplit("/", 1)[-1]:
        head, _, tail = ref.rpartition("/")
        module, *attrs = tail.split(".")
        file_part = f"{head}/{module}" if head else module
    for base in bases:
        target = base / file_part
        for candidate in ((target.with_suffix(".py"), target / "__init__.py") if attrs else (target, target.with_suffix(".py"))):
            if candidate.exists():
                if attrs and not _attributes_resolve(candidate, attrs):
                    return f"{'.'.join(attrs)} is not defined in {candidate.relative_to(ROOT)}"
                return None
    return "no such file or folder"


def _looks_like_project_path(ref: str) -> bool:
    """A project file or folder, not a URL, a run-time path or a slice name such as ``<ID>_<n>.tif``."""
    first = ref.lstrip("./").split("/", 1)[0]
    if "/" in ref.strip("/"):
        return first in TOP_DIRS or first in SUBPACKAGES or ref.startswith("../")
    return bool(re.fullmatch(r"[\w-]+\.py|[\w-]+/", ref)) and ref.rstrip("/") in (*TOP_DIRS, *SUBPACKAGES) \
        or bool(re.fullmatch(r"[\w-]+\.py", ref))


def _code_spans(text: str) -> Iterator[tuple[int, str]]:
    """(offset, content) of every ``code`` span, Markdown or reST."""
    for m in re.finditer(r"``([^`\n]+)``|`([^`\n]+)`", text):
        yield m.start(), m.group(1) or m.group(2)


def broken_references() -> list[str]:
    scripts = set(re.findall(r"^(lggdemo-[a-z]+)\s*=", (ROOT / "pyproject.toml").read_text(), re.M))
    problems: list[str] = []
    seen: set[tuple[Path, int, str]] = set()

    def report(path: Path, line: int, ref: str, why: str | None) -> None:
        if why and (path, line, ref) not in seen:
            seen.add((path, line, ref))
            problems.append(f"{path.relative_to(ROOT)}:{line}: {ref!r}: {why}")

    for path, first, text in _texts():
        def line_of(offset: int, first: int = first, text: str = text) -> int:
            return first + text.count("\n", 0, offset)

        for m in DOTTED.finditer(text):
            report(path, line_of(m.start()), m.group(0), dotted_problem(m.group(0)))
        for m in COMMAND.finditer(text):
            report(path, line_of(m.start()), m.group(0), None if m.group(0) in scripts else "not in [project.scripts]")
        if path.suffix == ".md":
            for m in MD_LINK.finditer(text):
                report(path, line_of(m.start()), m.group(1), link_problem(m.group(1), path))
        spans = [(offset, span, True) for offset, span in _code_spans(text)] + [(0, text, False)]
        for offset, span, quoted in spans:
            for m in PATH.finditer(span):
                ref = m.group(1).rstrip(".,;:")
                if span[m.end():m.end() + 1] in ("<", "{", "*") or ref.startswith("lggdemo.") \
                        or not _looks_like_project_path(ref):
                    continue  # a pattern (``C1-f<I>.json``), not one file
                if not quoted and not (ref.split("/", 1)[0] in TOP_DIRS or ref.endswith((".py", ".md"))):
                    continue  # in prose only unmistakable paths: "train/val" is a split, not a folder
                report(path, line_of(offset + m.start()), ref, path_problem(ref, path))
    return problems


def test_every_reference_in_the_docs_resolves() -> None:
    problems = broken_references()
    assert not problems, "references to things that do not exist:\n" + "\n".join(problems)


def test_the_checker_finds_what_is_missing(tmp_path: Path) -> None:
    """The checker itself: real names pass, a moved module, a missing function, file, anchor or command do not."""
    assert dotted_problem("lggdemo.models.card.ModelCard.from_dict") is None
    assert dotted_problem("lggdemo.train.TrainConfig") is None  # a lazy re-export (TYPE_CHECKING import)
    assert dotted_problem("lggdemo.postprocess") == "no such module"
    assert "not defined" in dotted_problem("lggdemo.models.card.no_such_function")
    assert "not defined" in dotted_problem("lggdemo.models.card.ModelCard.no_such_member")
    readme = PACKAGE / "inference" / "README.md"
    assert path_problem("models/forward.py", readme) is None
    assert path_problem("inference/wholepatient.predict_volume", readme) is None
    assert path_problem("lggdemo/readers/resample.py", ROOT / "README.md") == "no such file or folder"
    assert "not defined" in path_problem("inference/wholepatient.no_such_function", readme)
    assert link_problem("docs/formats.md#no-such-heading", ROOT / "README.md").startswith("no heading")
    assert link_problem("docs/no-such-page.md", ROOT / "README.md") == "no such file"
    assert _looks_like_project_path("tests/test_engine.py") and not _looks_like_project_path("<ID>_<n>.tif")
