"""Network builders, the logits-to-mask rule and the patient logit (``lggdemo.models.networks``)."""

from __future__ import annotations

import torch

from lggdemo.models.networks import (
    SegConfig,
    build_segmentation,
    seg_logits,
)


def test_unet_maps_slices_to_one_logit_per_pixel() -> None:
    torch.manual_seed(0)
    model = build_segmentation(SegConfig(encoder="resnet18", image_size=64)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert tuple(out.shape) == (2, 1, 64, 64)


def test_flip_tta_averages_the_mirror_image() -> None:
    torch.manual_seed(0)
    model = build_segmentation(SegConfig(encoder="resnet18", image_size=64)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        plain = seg_logits(model, SegConfig(encoder="resnet18", flip_tta=False), x)
        tta = seg_logits(model, SegConfig(encoder="resnet18", flip_tta=True), x)
        mirrored = torch.flip(model(torch.flip(x, dims=[3])), dims=[3])
    assert torch.allclose(tta, 0.5 * (plain + mirrored), atol=1e-5)
    assert not torch.allclose(tta, plain)


def test_flip_tta_sends_slices_and_mirrors_in_one_pass() -> None:
    torch.manual_seed(0)
    model = build_segmentation(SegConfig(encoder="resnet18", image_size=64)).eval()
    batches: list[int] = []
    model.register_forward_pre_hook(lambda _m, args: batches.append(len(args[0])))
    x, cfg = torch.randn(3, 3, 64, 64), SegConfig(encoder="resnet18", flip_tta=True)
    with torch.no_grad():
        one_pass = seg_logits(model, cfg, x)
        batches_seen = list(batches)
        two_passes = 0.5 * (model(x) + torch.flip(model(torch.flip(x, dims=[3])), dims=[3]))
    assert batches_seen == [6]
    assert torch.allclose(one_pass, two_passes, atol=1e-5)
