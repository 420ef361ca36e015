"""torchvision (and smp, grad-cam) import on a CPU-only torch thanks to the guard; the guard does nothing elsewhere."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import lggdemo  # noqa: F401  (installs the guard)
from lggdemo import _torchvision_guard


def test_guard_status_is_known() -> None:
    assert _torchvision_guard.STATUS in ("extension", "schemas")
    assert _torchvision_guard.install() == _torchvision_guard.STATUS, "idempotent"


def test_vision_stack_imports_and_builds_without_downloads() -> None:
    import pytorch_grad_cam
    import segmentation_models_pytorch as smp
    import torch
    import torchvision

    model = torchvision.models.resnet50(weights=None)
    assert sum(p.numel() for p in model.parameters()) > 20_000_000
    assert model.fc.out_features == 1000
    unet = smp.Unet("resnet18", encoder_weights=None, in_channels=3, classes=1)
    with torch.no_grad():
        assert unet.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 1, 32, 32)
    assert hasattr(pytorch_grad_cam, "GradCAM")


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_guard_is_a_no_op_when_the_ops_already_exist() -> None:
    # Stand in for a machine where torchvision's extension loads: the operators exist before the guard runs.
    status = _run(
        """
        import torch
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
        from lggdemo import _torchvision_guard as g
        import torchvision
        print(g.STATUS, g._LIBRARY is None)
        """
    )
    assert status == "extension True"
