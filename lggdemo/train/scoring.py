"""The engine the trainer scores its models with: validation masks, held-out grades, cross-validation folds.

The trainer's numbers must describe what the app runs, and the app runs ``$LGG_ENGINE`` (auto: ONNX Runtime on
a CPU, PyTorch on a GPU), so the trainer scores on the same rule. A model in training has no weights file yet, so
its ONNX graph is exported for the call and not cached (a few seconds, against tens of seconds saved on the
validation patients' slices). A fallback to PyTorch is reported once per call as a progress message.
"""

from __future__ import annotations

import torch
from torch import nn

from lggdemo.models.engine import Engine, engine_from_modules
from lggdemo.train.events import INFO
from lggdemo.train.progress import Progress


def scoring_engine(device: torch.device, progress: Progress | None = None, *, seg: nn.Module | None = None,
                   seg_size: int | None = None, grade: nn.Module | None = None,
                   grade_size: int | None = None) -> Engine:
    """An engine over the trainer's own modules (``*_size``: each network's input side)."""
    engine = engine_from_modules(device, None, seg=seg, seg_size=seg_size, grade=grade, grade_size=grade_size)
    if engine.note and progress is not None:
        progress.emit(INFO, message=engine.note)
    return engine
