"""The reference engine: the PyTorch modules themselves, on the CPU, CUDA or MPS.

Its modules are the ones Grad-CAM hooks into (the Predictor shares them rather than holding a second copy), so
every forward pass holds :data:`~lggdemo.models.engine.locks.MODEL_LOCK`. On CUDA the passes run under autocast, as
they always have; elsewhere in float32.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import numpy as np
import torch
from torch import nn

from lggdemo.device import describe, threads_phrase
from lggdemo.models.engine.base import EngineError
from lggdemo.models.engine.locks import MODEL_LOCK


def module_device(module: nn.Module) -> torch.device:
    """The device a module's parameters live on (the CPU for a module without any)."""
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


class TorchEngine:
    """PyTorch forward passes of whichever networks it was given (``None``: that network is not held)."""

    name = "torch"

    def __init__(self, seg: nn.Module | None = None, grade: nn.Module | None = None,
                 device: torch.device | None = None, *, note: str | None = None) -> None:
        held = seg if seg is not None else grade
        self.device = device or (module_device(held) if held is not None else torch.device("cpu"))
        self.seg = seg
        self.grade_net = grade
        self.note = note

    @property
    def description(self) -> str:
        """Where it runs, e.g. "CPU, PyTorch, 2 threads" or "CUDA GPU (…), PyTorch"."""
        if self.device.type == "cpu":
            return f"CPU, PyTorch, {threads_phrase(torch.get_num_threads())}"
        return f"{describe(self.device)}, PyTorch"

    def serialised(self) -> AbstractContextManager[object]:
        return MODEL_LOCK

    @torch.no_grad()
    def segment(self, x: np.ndarray) -> np.ndarray:
        if self.seg is None:
            raise EngineError("this engine holds no segmentation network")
        t = torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device)
        with MODEL_LOCK:
            self.seg.eval()
            with torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
                out = self.seg(t)
        return out.float().cpu().numpy()

    @torch.no_grad()
    def grade(self, crops: np.ndarray, clinical: np.ndarray) -> np.ndarray:
        if self.grade_net is None:
            raise EngineError("this engine holds no grade network")
        c = torch.from_numpy(np.ascontiguousarray(crops, np.float32)).to(self.device)
        v = torch.from_numpy(np.ascontiguousarray(clinical, np.float32)).to(self.device)
        with MODEL_LOCK:
            self.grade_net.eval()
            out = self.grade_net(c, v)
        return out[:, 0].float().cpu().numpy()


def as_engine(model: object, device: torch.device | None = None) -> object:
    """An engine as it is, or a bare module wrapped in a :class:`TorchEngine` (as segmentation network and grade
    network both: whichever the caller then asks for) -- so a script or the trainer may still pass modules."""
    if isinstance(model, nn.Module):
        return TorchEngine(model, model, device)
    return model
