"""The forward passes every score goes through (``lggdemo.models.forward``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lggdemo.models import forward
from lggdemo.models.forward import predict_patient_masks
from lggdemo.models.networks import SegConfig, build_segmentation


def test_patient_masks_are_the_2d_masks_with_the_whole_patient_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every patient-level score goes through predict_patient_masks: a speck away from a patient's tumour is
    gone from what is scored, per patient (another patient's smaller tumour stays)."""
    two_d = np.zeros((4, 16, 16), np.uint8)
    two_d[0:2, 2:8, 2:8] = 1  # patient A's tumour, 72 voxels
    two_d[1, 13:15, 13:15] = 1  # a 4-voxel speck in A
    two_d[3, 5:7, 5:7] = 1  # patient B's small tumour
    seen = {}

    def fake_segment(model, config, images, device, batch_size=32, **kw):  # noqa: ANN001, ANN003, ANN202
        seen["n"] = len(images)
        return two_d.copy(), None

    monkeypatch.setattr(forward, "segment_slices", fake_segment)
    images = np.zeros((4, 16, 16, 3), np.uint8)
    out = predict_patient_masks(torch.nn.Identity(), None, images, ["A", "A", "B", "B"], torch.device("cpu"))  # type: ignore[arg-type]
    assert seen["n"] == 4
    expected = two_d.copy()
    expected[1, 13:15, 13:15] = 0
    assert np.array_equal(out, expected)


@pytest.mark.parametrize(("flip", "passes"), [(True, [4, 4, 2]), (False, [4, 1])])
def test_a_pass_holds_batch_size_images_with_or_without_the_flip(flip: bool, passes: list[int]) -> None:
    """``batch_size`` bounds the images per pass (memory): with the flip, half as many slices and their mirrors."""
    torch.manual_seed(0)
    cfg = SegConfig(encoder="resnet18", image_size=32, flip_tta=flip)
    model = build_segmentation(cfg).eval()
    seen: list[int] = []
    model.register_forward_pre_hook(lambda _m, args: seen.append(len(args[0])))
    head = np.full((5, 256, 256, 3), 50, np.uint8)  # slices with head (air slices would skip the network)
    masks, _ = forward.segment_slices(model, cfg, head, torch.device("cpu"), 4)
    assert seen == passes and masks.shape == (5, 256, 256)
