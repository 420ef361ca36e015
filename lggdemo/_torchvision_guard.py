"""Make ``import torchvision`` work on a CPU-only torch whose torchvision wheel is a CUDA build.

Every torchvision wheel on PyPI for torch 2.13 links its compiled extension against
``libtorch_cuda.so``. With the CPU torch the extension cannot load, and torchvision's meta
registrations then fail with ``operator torchvision::nms does not exist`` -- which also breaks
segmentation-models-pytorch, timm and grad-cam, all of which import torchvision.

The project never uses torchvision's NMS or its image codecs, so declaring the two missing operator
schemas is enough. Where the extension loads (a CUDA install, macOS) this module does nothing.
It must run before anything imports torchvision, hence ``lggdemo/__init__.py`` imports it first.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

#: "extension" when torchvision's own ops loaded, "schemas" when this guard had to declare them,
#: "absent" when torchvision is not installed, "already-imported" when it was imported before us.
STATUS: str = "unknown"
_LIBRARY: torch.library.Library | None = None  # kept alive: dropping it would undo the definitions


def _extension_path() -> Path | None:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return None
    matches = sorted(Path(spec.origin).parent.glob("_C*.so")) + sorted(Path(spec.origin).parent.glob("_C*.pyd"))
    return matches[0] if matches else None


def _ops_defined() -> bool:
    try:
        torch._C._dispatch_find_schema_or_throw("torchvision::nms", "")
        return True
    except RuntimeError:
        return False


def install() -> str:
    """Idempotent; returns how torchvision's operators were made available."""
    global STATUS, _LIBRARY
    if STATUS != "unknown":
        return STATUS
    if "torchvision" in sys.modules:
        STATUS = "already-imported"
        return STATUS
    if importlib.util.find_spec("torchvision") is None:
        STATUS = "absent"
        return STATUS
    ext = _extension_path()
    if ext is not None:
        try:
            torch.ops.load_library(str(ext))
        except (OSError, RuntimeError):
            pass
    if _ops_defined():
        STATUS = "extension"
        return STATUS
    _LIBRARY = torch.library.Library("torchvision", "DEF")  # kept in a global: the definitions must outlive this call
    _LIBRARY.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBRARY.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
    STATUS = "schemas"
    return STATUS


install()
