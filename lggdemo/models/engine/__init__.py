"""Engines that run the two networks' forward passes: ``torch`` (the reference) and ``onnx`` (ONNX Runtime, CPU).

Everything that runs the models goes through an engine: the Predictor (slices and whole patients), the teaching
layer, the evaluator, the trainer's validation, the benchmarks. Grad-CAM alone needs gradients and stays in
PyTorch (its modules are loaded when a heatmap is first asked for).

Example::

    engine = load_engine(weights.active_dir(), torch.device("cpu"))  # auto: ONNX Runtime on a CPU
    logits = engine.segment(x)  # (N, 3, s, s) float32 -> (N, 1, s, s)

``load_engine`` builds an engine from a weights folder (ONNX files cached by the weights' SHA-256, see
:mod:`lggdemo.models.engine.export`); ``engine_from_modules`` from networks in memory (the trainer's, exported on the
fly). Neither fails for want of ONNX Runtime or a failed export: they fall back to ``torch`` and say so in
``engine.note``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lggdemo.models import MODELS
from lggdemo.models.engine.base import (
    CHOICES,
    ENV_VAR,
    LABELS,
    Engine,
    EngineChoice,
    EngineError,
    choose_engine,
    cpu_threads,
    requested_engine,
)
from lggdemo.models.engine.locks import MODEL_LOCK, FairRLock
from lggdemo.models.engine.onnx_engine import OnnxEngine
from lggdemo.models.engine.torch_engine import TorchEngine, as_engine
from lggdemo.models.weights import GRADE_FILE, SEG_FILE, WeightsError, load_grade, load_segmentation, read_config

__all__ = ["CHOICES", "ENV_VAR", "LABELS", "MODEL_LOCK", "Engine", "EngineChoice", "EngineError", "FairRLock",
           "OnnxEngine", "TorchEngine", "as_engine", "choose_engine", "engine_from_modules", "load_engine",
           "requested_engine"]

_FILES = {"segmentation": SEG_FILE, "grade": GRADE_FILE}
_LOADERS = {"segmentation": load_segmentation, "grade": load_grade}


def _fallback_note(exc: BaseException) -> str:
    return (f"The ONNX Runtime engine could not be prepared ({type(exc).__name__}: {exc}); "
            "the models run on PyTorch instead.")


def _onnx_from_directory(directory: Path, models: Sequence[str], note: str | None) -> OnnxEngine:
    from lggdemo.models.engine.export import cached_export, export_bytes
    from lggdemo.models.engine.onnx_engine import open_session

    threads = cpu_threads()
    sessions: dict[str, Any] = {}
    for kind in models:
        file = directory / _FILES[kind]

        def build(kind: str = kind) -> tuple[nn.Module, int]:
            module, config = _LOADERS[kind](directory, "cpu")
            return module, config.image_size

        try:
            entry = cached_export(kind, file, build)
        except OSError as exc:  # a read-only or full cache: export for this process only
            module, size = build()
            sessions[kind] = open_session(export_bytes(kind, module, size), threads)
            note = note or f"The ONNX cache could not be written ({exc}); the export is kept in memory only."
            continue
        try:
            sessions[kind] = open_session(entry.path, threads)
        except Exception:  # noqa: BLE001 -- a file ONNX Runtime refuses (damaged after its hash was taken): rebuild once
            sessions[kind] = open_session(cached_export(kind, file, build, rebuild=True).path, threads)
    return OnnxEngine(sessions.get("segmentation"), sessions.get("grade"), threads=threads, note=note)


def load_engine(directory: Path, device: torch.device, requested: str | EngineChoice | None = None, *,
                models: Sequence[str] = MODELS) -> Engine:
    """An engine for the networks of a weights folder.

    ``requested``: ``auto``/``torch``/``onnx`` (None: ``$LGG_ENGINE``, else ``auto``) or a choice already made.
    Raises WeightsError when the weights themselves are missing or unreadable; anything else that stops the ONNX
    engine (no ONNX Runtime, a failed export) gives the ``torch`` engine with a note.
    """
    directory = Path(directory)
    choice = requested if isinstance(requested, EngineChoice) else choose_engine(requested, device)
    for kind in models:
        read_config(directory / _FILES[kind])  # WeightsError before any export: missing weights are not a fallback
    if choice.name == "onnx":
        try:
            return _onnx_from_directory(directory, models, choice.note)
        except WeightsError:
            raise
        except Exception as exc:  # noqa: BLE001 -- any export or ONNX Runtime failure: the app stays up on torch
            choice = EngineChoice("torch", choice.requested, _fallback_note(exc))
    seg = load_segmentation(directory, device)[0] if "segmentation" in models else None
    grade = load_grade(directory, device)[0] if "grade" in models else None
    return TorchEngine(seg, grade, device, note=choice.note)


def engine_from_modules(device: torch.device, requested: str | EngineChoice | None = None, *,
                        seg: nn.Module | None = None, seg_size: int | None = None,
                        grade: nn.Module | None = None, grade_size: int | None = None) -> Engine:
    """An engine for networks in memory (the trainer's, untrained benchmark models): ONNX graphs are exported
    on the spot and not cached, since no weights file names them. ``*_size``: each network's input side."""
    choice = requested if isinstance(requested, EngineChoice) else choose_engine(requested, device)
    if choice.name == "onnx":
        from lggdemo.models.engine.export import export_bytes

        try:
            seg_graph = export_bytes("segmentation", seg, int(seg_size or 0)) if seg is not None else None
            grade_graph = export_bytes("grade", grade, int(grade_size or 0)) if grade is not None else None
            return OnnxEngine.from_sources(seg_graph, grade_graph, note=choice.note)
        except Exception as exc:  # noqa: BLE001 -- as in load_engine: fall back, say so
            choice = EngineChoice("torch", choice.requested, _fallback_note(exc))
    return TorchEngine(seg, grade, device, note=choice.note)
