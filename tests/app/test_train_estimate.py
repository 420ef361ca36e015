"""The sidebar says how long each preset trains on this machine before Start (a probe measured on request, cached)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from lggdemo.train import estimate as est
from lggdemo.train.config import TrainConfig


def _fake_rates(cfg: TrainConfig, device: torch.device, steps: int = 3) -> est.Throughput:
    return est.Throughput(cpu="test CPU", device="CPU", threads=2, precision="fp32", encoder=cfg.encoder,
                          image_size=cfg.image_size, grade_image_size=cfg.grade_image_size, batch_size=cfg.batch_size,
                          segmentation_images_per_second=40.0, grade_images_per_second=80.0,
                          measured="2026-12-07T03:00:00+00:00", load=0.0)


def _sidebar_script() -> None:
    import streamlit as st

    from lggdemo.ui.train.sidebar import render_training_sidebar

    with st.sidebar:
        render_training_sidebar()


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, synthetic_root: Path) -> None:
    monkeypatch.setenv("LGG_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("LGG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LGG_DATA_DIR", str(synthetic_root))


def _captions(at: AppTest) -> str:
    return "\n".join(str(c.value) for c in at.sidebar.caption)


def test_sidebar_times_the_presets_on_request_then_shows_the_cached_estimate(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def fake(cfg: TrainConfig, device: torch.device, steps: int = 3) -> est.Throughput:
        calls.append(cfg.preset)
        return _fake_rates(cfg, device)

    monkeypatch.setattr(est, "measure", fake)
    at = AppTest.from_function(_sidebar_script, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Training time here" not in _captions(at) and not calls  # nothing is timed without asking
    (button,) = [b for b in at.button if b.label == "Estimate the training time on this machine"]
    button.click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert calls == ["quick"]  # the presets share sizes and precision: one probe serves all three
    bundled = est.estimate_from(TrainConfig.from_preset("bundled"), _fake_rates(TrainConfig(), torch.device("cpu")),
                                True)
    assert f"bundled ~{est.duration_text(bundled.seconds)}" in _captions(at)

    again = AppTest.from_function(_sidebar_script, default_timeout=60)  # a new session reads the cache
    again.run()
    assert "bundled ~23 min" in _captions(again) and len(calls) == 1
    assert not [b for b in again.button if b.label == "Estimate the training time on this machine"]
