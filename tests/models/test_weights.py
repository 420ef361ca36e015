"""Weights on disk: safetensors with their config, hashes checked against the card (``lggdemo.models.weights``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from lggdemo.models.networks import SegConfig, build_segmentation
from lggdemo.models.weights import (
    CARD_FILE,
    SEG_FILE,
    WeightsError,
    is_complete,
    load_card,
    load_segmentation,
    save_model,
    sha256_file,
)


def test_saved_unet_loads_back_with_its_config_and_half_precision_values(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = SegConfig(encoder="resnet18", image_size=64)
    model = build_segmentation(cfg).eval()
    digest = save_model(tmp_path / SEG_FILE, model, cfg)
    assert digest == sha256_file(tmp_path / SEG_FILE) and not list(tmp_path.glob(".*tmp*"))
    loaded, loaded_cfg = load_segmentation(tmp_path)
    assert loaded_cfg == cfg
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        if a.is_floating_point():
            assert torch.allclose(a, b, atol=1e-2, rtol=1e-3), name  # stored as fp16
        else:
            assert torch.equal(a, b), name


def test_unreadable_or_mismatched_weights_are_a_weights_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="Missing"):
        load_segmentation(tmp_path)
    (tmp_path / SEG_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="Cannot read"):
        load_segmentation(tmp_path)
    other = build_segmentation(SegConfig(encoder="resnet18", image_size=64))
    save_model(tmp_path / SEG_FILE, other, SegConfig(encoder="resnet34", image_size=64))  # config lies
    with pytest.raises(WeightsError, match="does not match its config"):
        load_segmentation(tmp_path)


def test_a_folder_is_complete_only_when_every_file_matches_the_cards_hash(tiny_weights: Path, tmp_path: Path) -> None:
    folder = tmp_path / "w"
    shutil.copytree(tiny_weights, folder)
    assert is_complete(folder)
    card = json.loads((folder / CARD_FILE).read_text())
    assert load_card(folder).file_sha256(SEG_FILE) == sha256_file(folder / SEG_FILE)
    with open(folder / SEG_FILE, "ab") as fh:
        fh.write(b"\0")  # a replaced or damaged file
    assert not is_complete(folder)
    (folder / CARD_FILE).write_text("{broken")
    assert not is_complete(folder)
    with pytest.raises(WeightsError, match="Corrupt model card"):
        load_card(folder)
    assert card["version"]
