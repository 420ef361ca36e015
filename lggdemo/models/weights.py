"""Weights on disk: safetensors files plus ``model_card.json``, written atomically, loaded without pickle.

A weights folder is *complete* when its card lists each model file with a SHA-256 that matches:
the card is written last, so a run killed while saving never yields a folder that looks usable,
and a folder whose files were swapped under it is refused rather than half-loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from lggdemo._fs import PROJECT_ROOT, atomic_write_bytes, runs_dir
from lggdemo.models.card import CardError, ModelCard
from lggdemo.models.networks import (
    GradeConfig,
    GradeNet,
    SegConfig,
    build_grade,
    build_segmentation,
    config_to_json,
    grade_config_from_dict,
    seg_config_from_dict,
)

BUNDLED_DIR = PROJECT_ROOT / "weights"
SEG_FILE = "segmentation.safetensors"
GRADE_FILE = "grade.safetensors"
CARD_FILE = "model_card.json"
POINTER_FILE = "active.json"


class WeightsError(RuntimeError):
    """Weights that cannot be used: missing, incomplete, corrupt or from an incompatible config."""


_HASHES: dict[tuple[str, int, int, int], str] = {}


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime, inode).

    ``is_complete`` runs on every page view that asks which weights are active; re-hashing 75 MB
    each time would cost seconds, while any rewrite or atomic replace changes the stat key.
    """
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def save_model(path: Path, model: torch.nn.Module, config: SegConfig | GradeConfig, *, half: bool = True) -> str:
    """Write a state dict (fp16 by default: half the size, upcast on load) atomically; return its SHA-256."""
    tensors = {k: (v.detach().half() if half and v.is_floating_point() else v.detach()).contiguous().cpu()
               for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata={"config": config_to_json(config), "kind": type(config).__name__})
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return sha256_file(path)


def _read_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import safe_open

    if not path.is_file():
        raise WeightsError(f"Missing weights file: {path}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise WeightsError(f"Cannot read {path.name}: {exc}") from exc
    return {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}, json.loads(meta.get("config", "{}"))


def read_config(path: Path) -> dict[str, Any]:
    """The model config stored in a safetensors header, without reading the tensors (an engine that runs an
    exported graph needs the config, not the weights); WeightsError when the file is missing or unreadable."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Missing weights file: {path}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        return json.loads(meta.get("config", "{}"))
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise WeightsError(f"Cannot read {path.name}: {exc}") from exc


def load_segmentation(directory: Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, SegConfig]:
    """The U-Net of a weights folder in eval mode on ``device`` (float16 on disk, float32 here), with its config;
    WeightsError when the file is missing, corrupt or does not match its config. The card's hash is not checked
    here: :func:`is_complete` does that for a folder."""
    state, cfg = _read_state(Path(directory) / SEG_FILE)
    config = seg_config_from_dict(cfg)
    model = build_segmentation(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise WeightsError(f"{SEG_FILE} does not match its config: {exc}") from exc
    return model.to(device).eval(), config


def load_grade(directory: Path, device: str | torch.device = "cpu") -> tuple[GradeNet, GradeConfig]:
    """The grade network of a weights folder in eval mode on ``device``, with its config (as :func:`load_segmentation`)."""
    state, cfg = _read_state(Path(directory) / GRADE_FILE)
    config = grade_config_from_dict(cfg)
    model = build_grade(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise WeightsError(f"{GRADE_FILE} does not match its config: {exc}") from exc
    return model.to(device).eval(), config


def read_card(directory: Path) -> dict[str, Any]:
    """The card's raw JSON object, for code that edits it; readers use :func:`load_card`.

    ``directory`` is a weights folder, or a card file itself: fold cards are kept as JSON files in
    ``docs/experiments`` long after their weights folders are gone, and they are read the same way.
    """
    path = Path(directory) if Path(directory).is_file() else Path(directory) / CARD_FILE
    if not path.is_file():
        raise WeightsError(f"No model card in {directory}")
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WeightsError(f"Corrupt model card {path}: {exc}") from exc
    if not isinstance(value, dict):
        raise WeightsError(f"Corrupt model card {path}: not a JSON object")
    return value


def load_card(directory: Path) -> ModelCard:
    """The card of a weights folder (or a card file) as a :class:`~lggdemo.models.card.ModelCard`.

    Raises :class:`WeightsError` if it is missing or unusable.
    """
    try:
        return ModelCard.from_dict(read_card(directory))
    except CardError as exc:
        raise WeightsError(f"Unusable model card in {directory}: {exc}") from exc


def write_card(directory: Path, card: ModelCard | dict[str, Any]) -> None:
    """Write a card (temp-then-rename), stamped with the schema version it follows."""
    data = (card if isinstance(card, ModelCard) else ModelCard(dict(card))).to_dict()
    atomic_write_bytes(Path(directory) / CARD_FILE, (json.dumps(data, indent=2, sort_keys=False, default=str) + "\n").encode())


def is_complete(directory: Path, *, require: tuple[str, ...] = (SEG_FILE, GRADE_FILE)) -> bool:
    """True when the card lists every required file and each file's hash matches the card."""
    try:
        card = load_card(directory)
    except WeightsError:
        return False
    for name in require:
        expected = card.file_sha256(name)
        path = Path(directory) / name
        if not expected or not path.is_file() or sha256_file(path) != expected:
            return False
    return True


# --- which weights the app uses ------------------------------------------------------------


def pointer_path() -> Path:
    return runs_dir() / POINTER_FILE


def active_dir() -> Path:
    """The run the pointer names when it is complete, else the bundled weights."""
    ptr = pointer_path()
    if ptr.is_file():
        try:
            target = Path(json.loads(ptr.read_text())["path"])
            if not target.is_absolute():
                target = runs_dir() / target
            if is_complete(target):
                return target
        except (json.JSONDecodeError, KeyError, TypeError, OSError):
            pass
    return BUNDLED_DIR


def set_active(directory: Path | None) -> None:
    """Point the app at a complete run, or back at the bundled weights with ``None``."""
    if directory is None:
        pointer_path().unlink(missing_ok=True)
        return
    directory = Path(directory).resolve()
    if not is_complete(directory):
        raise WeightsError(f"{directory} is not a complete weights folder (card and both models with matching hashes).")
    atomic_write_bytes(pointer_path(), json.dumps({"path": str(directory)}).encode())


@dataclass(frozen=True)
class ActiveWeights:
    directory: Path
    version: str  # changes whenever the files change: the cache key for loaded models


def weights_version(directory: Path) -> str:
    """A key that changes whenever a weights folder's card does: what loaded models are cached under."""
    try:
        version = (load_card(directory).version or "") + "|" + str(directory)
        card_path = Path(directory) / CARD_FILE
        version += f"|{card_path.stat().st_mtime_ns}"
    except (WeightsError, OSError):
        version = f"missing|{directory}"
    return version


def active_weights() -> ActiveWeights:
    """The folder the app uses now (:func:`active_dir`) and its version key."""
    directory = active_dir()
    return ActiveWeights(directory, weights_version(directory))
