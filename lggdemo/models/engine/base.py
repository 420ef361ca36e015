"""What an engine is, and which one runs: ``LGG_ENGINE=auto|torch|onnx`` or ``--engine``.

An engine runs the two networks' forward passes on arrays, nothing else: preprocessing, the test-time flip,
thresholds and post-processing stay in one place (``evaluate``, ``models``) above it, so both engines feed the
same numbers into the same rules. ``torch`` is the reference (CPU, CUDA, MPS; its modules also serve Grad-CAM);
``onnx`` runs ONNX Runtime's CPU execution provider on files exported from the same weights.
"""

from __future__ import annotations

import importlib
import os
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch

ENV_VAR = "LGG_ENGINE"
CHOICES = ("auto", "torch", "onnx")
LABELS = {"torch": "PyTorch", "onnx": "ONNX Runtime"}


class EngineError(ValueError):
    """An engine that cannot be chosen or run (unknown name, a network it does not hold); the message says which."""


@runtime_checkable
class Engine(Protocol):
    """The forward passes of the U-Net and the grade network, on float32 arrays.

    ``name`` is ``torch`` or ``onnx``; ``description`` says where it runs, as the Predict caption shows it
    ("CPU, ONNX Runtime, 2 threads"); ``note`` says why it is not the engine that was asked for (a fallback).
    """

    name: str
    device: torch.device
    note: str | None

    @property
    def description(self) -> str: ...

    def segment(self, x: np.ndarray) -> np.ndarray:
        """(N, 3, s, s) normalised slices -> (N, 1, s, s) tumour logits of the bare network (no test-time flip)."""
        ...

    def grade(self, crops: np.ndarray, clinical: np.ndarray) -> np.ndarray:
        """(N, 3, g, g) tumour crops + (N, F) clinical vectors -> (N,) G3 logits."""
        ...

    def serialised(self) -> AbstractContextManager[object]:
        """What a caller holds to run several passes as one turn: the model lock for ``torch``, nothing for ``onnx``."""
        ...


@dataclass(frozen=True)
class EngineChoice:
    """The engine that will run and, when it is not the one asked for, why."""

    name: str  # "torch" or "onnx"
    requested: str  # "auto", "torch" or "onnx"
    note: str | None = None


def requested_engine(value: str | None = None) -> str:
    """``value`` or ``$LGG_ENGINE`` or ``auto``, checked: an unknown name is an EngineError, not a silent default."""
    name = (value or os.environ.get(ENV_VAR) or "auto").strip().lower()
    if name not in CHOICES:
        source = "--engine" if value else ENV_VAR
        raise EngineError(f"Unknown engine {name!r} ({source}): choose one of {', '.join(CHOICES)}.")
    return name


def onnxruntime_missing() -> str | None:
    """None when ONNX Runtime imports, else why not (the fallback note's reason)."""
    try:
        importlib.import_module("onnxruntime")
    except ImportError as exc:  # also what a test gets with sys.modules["onnxruntime"] = None
        return f"ONNX Runtime is not installed ({exc})"
    return None


def choose_engine(requested: str | None, device: torch.device) -> EngineChoice:
    """``auto`` is ONNX Runtime on a CPU (twice PyTorch's speed here, same numbers to 1e-5) and PyTorch on a GPU.

    ONNX Runtime is used on the CPU only (its CPU execution provider is the one installed): asked for on a
    GPU, or missing, the choice falls back to ``torch`` with a note rather than failing -- the app stays up.
    """
    wanted = requested_engine(requested)
    if wanted == "torch" or (wanted == "auto" and device.type != "cpu"):
        return EngineChoice("torch", wanted)
    if device.type != "cpu":
        return EngineChoice("torch", wanted, f"ONNX Runtime runs on the CPU only; the models run on PyTorch on "
                                             f"{device.type.upper()} instead.")
    missing = onnxruntime_missing()
    if missing:
        return EngineChoice("torch", wanted, f"{missing}: the models run on PyTorch instead.")
    return EngineChoice("onnx", wanted)


def cpu_threads() -> int:
    """Threads for ONNX Runtime's intra-op pool: torch's count, i.e. the cores unless OMP_NUM_THREADS says fewer."""
    return max(1, torch.get_num_threads())
