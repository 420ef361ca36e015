"""The house rules of ``lggdemo/``'s layout, checked on the source: imports run one way, no cycles, small modules.

Layers, lowest first (README "Layout"): a module may import its own package and any lower layer, never a higher
one or a sibling package of its own layer. Imports inside functions count too, so a cycle cannot hide in one.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lggdemo"
LAYERS: list[set[str]] = [
    {"lggdemo", "lggdemo._torchvision_guard", "lggdemo._fs", "lggdemo.device", "lggdemo.access"},
    {"lggdemo.metrics"},
    {"lggdemo.measure"},  # clinical measurements of a mask: pure, over metrics (surface distances)
    {"lggdemo.data"},
    {"lggdemo.models"},
    {"lggdemo.patient", "lggdemo.viz", "lggdemo.corrections"},
    {"lggdemo.report"},  # the PDF: drawn from a report document (a dict) and viz pictures; below the CLI that writes it
    {"lggdemo.inference"},
    {"lggdemo.teach", "lggdemo.evaluation", "lggdemo.longitudinal"},  # longitudinal: two studies -> the change
    {"lggdemo.train"},
    {"lggdemo.jobs", "lggdemo.bench"},
    # The commands (``lggdemo-<name>``, ``python -m lggdemo.<name>``) are top-level modules beside the UI: they parse
    # arguments and call the layers below; nothing imports them, and they import neither the UI nor each other.
    {"lggdemo.ui", "lggdemo.predict", "lggdemo.evaluate", "lggdemo.crossval", "lggdemo.compare"},
]
MAX_TOP_LEVEL_MODULES = 12
MAX_MODULE_LINES = 450


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _resolve(target: str) -> str:
    while target not in MODULES and "." in target:
        target = target.rsplit(".", 1)[0]
    return target


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lggdemo"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in MODULES else _resolve(node.module))
        elif isinstance(node, ast.Import):
            found |= {_resolve(a.name) for a in node.names if a.name.startswith("lggdemo")}
    return found


def _is_ancestor(package: str, module: str) -> bool:
    """A submodule importing its own parent package is no cycle: Python always imports the parent first."""
    return module.startswith(package + ".")


GRAPH = {name: {d for d in _imports(path) if d != name and not _is_ancestor(d, name)} for name, path in MODULES.items()}


def _layer(module: str) -> tuple[int, str]:
    for i, layer in enumerate(LAYERS):
        for root in sorted(layer, key=len, reverse=True):
            if module == root or (root != "lggdemo" and module.startswith(root + ".")):
                return i, root
    return 0, "lggdemo"


def test_every_import_goes_down_the_layers() -> None:
    wrong = []
    for module, deps in GRAPH.items():
        level, root = _layer(module)
        for dep in deps:
            dep_level, dep_root = _layer(dep)
            if dep_level > level or (dep_level == level and dep_root != root and level > 0):
                wrong.append(f"{module} imports {dep}")
    assert not wrong, "\n".join(sorted(wrong))


def test_there_is_no_import_cycle() -> None:
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in GRAPH.get(node, ()):
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*trail[trail.index(dep):], dep]))
            elif dep not in state:
                visit(dep, [*trail, dep])
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


def test_only_the_ui_imports_streamlit() -> None:
    offenders = [name for name, path in MODULES.items() if not name.startswith("lggdemo.ui")
                 and any(isinstance(n, (ast.Import, ast.ImportFrom)) and "streamlit" in ast.unparse(n)
                         for n in ast.walk(ast.parse(path.read_text())))]
    assert not offenders


def test_modules_stay_small_and_the_top_level_short() -> None:
    top = [p.name for p in PACKAGE.glob("*.py")]
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long


def test_the_rules_see_a_violation() -> None:
    """The checker itself: an inference module importing the UI is flagged."""
    level, _ = _layer("lggdemo.inference.predictor")
    assert _layer("lggdemo.ui.teach")[0] > level and _layer("lggdemo.data.kaggle")[0] < level
    assert _is_ancestor("lggdemo.train", "lggdemo.train.cli") and not _is_ancestor("lggdemo.train", "lggdemo.trainx")
    # a command sits on the top layer but apart from the UI: the trainer importing it, or it the UI, is flagged
    assert _layer("lggdemo.predict") == (_layer("lggdemo.ui.teach")[0], "lggdemo.predict")
