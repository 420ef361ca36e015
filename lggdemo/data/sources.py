"""Which dataset the app shows: ``LGG_DATA_DIR``, else the sidebar's path, else ``data/kaggle_3m``,
else the synthetic phantoms -- always something, and always saying which.

A path typed in the sidebar lets a visitor read the server's disk, so it is offered only while
``LGG_ALLOW_PATH_INPUT`` is on (default on: the app is meant for ``localhost``), and only beneath
``LGG_ALLOWED_ROOT`` when that is set (the dataset layer then also refuses every symlink inside such a
dataset that leaves the root: see ``data.leaves_allowed_root``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lggdemo._fs import PROJECT_ROOT
from lggdemo.data.kaggle import allowed_root, looks_like_dataset, resolve_root
from lggdemo.data.synthetic import default_root

PROJECT_DATA = PROJECT_ROOT / "data" / "kaggle_3m"


@dataclass(frozen=True)
class DatasetChoice:
    root: Path
    source: str  # "LGG_DATA_DIR" | "sidebar" | "project data/" | "synthetic"
    synthetic: bool
    warning: str | None = None  # why a requested location was not used


def path_input_allowed() -> bool:
    """Whether anyone may type a dataset path (``LGG_ALLOW_PATH_INPUT=0`` turns it off for everyone)."""
    return os.environ.get("LGG_ALLOW_PATH_INPUT", "1").strip().lower() not in ("0", "false", "no", "off")


def path_input_explicitly_allowed() -> bool:
    """Whether the operator set ``LGG_ALLOW_PATH_INPUT=1`` on purpose (visitors of a locked server may type paths)."""
    return os.environ.get("LGG_ALLOW_PATH_INPUT", "").strip().lower() in ("1", "true", "yes", "on")


def check_user_path(path: str) -> Path:
    """Refuse a typed path that the operator has not allowed; return it resolved otherwise."""
    if not path_input_allowed():
        raise PermissionError("Typing a dataset path is disabled on this server (LGG_ALLOW_PATH_INPUT=0).")
    resolved = Path(path).expanduser().resolve()
    root = allowed_root()
    if root is not None and resolved != root and root not in resolved.parents:
        raise PermissionError(f"Only folders under {root} may be opened on this server.")
    return resolved


def choose_dataset(sidebar_path: str | None = None) -> DatasetChoice:
    warnings: list[str] = []
    env = os.environ.get("LGG_DATA_DIR")
    if env:
        if looks_like_dataset(env):
            return DatasetChoice(resolve_root(env), "LGG_DATA_DIR", False)
        warnings.append(f"LGG_DATA_DIR={env} holds no kaggle_3m dataset (data.csv and patient folders).")
    if sidebar_path:
        try:
            resolved = check_user_path(sidebar_path)
            if looks_like_dataset(resolved):
                return DatasetChoice(resolve_root(resolved), "sidebar", False)
            warnings.append(f"{sidebar_path} holds no kaggle_3m dataset (data.csv and patient folders).")
        except PermissionError as exc:
            warnings.append(str(exc))
    if looks_like_dataset(PROJECT_DATA):
        return DatasetChoice(PROJECT_DATA, "project data/", False, " ".join(warnings) or None)
    return DatasetChoice(default_root(), "synthetic", True, " ".join(warnings) or None)
