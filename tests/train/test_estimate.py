"""The time a run will take, before it starts: a cached per-CPU probe of real training steps times the run's images."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from lggdemo import device as devices
from lggdemo.train import estimate as est
from lggdemo.train.cli import main
from lggdemo.train.config import TrainConfig

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LGG_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _fake_rates(cfg: TrainConfig, device: torch.device, steps: int = 3) -> est.Throughput:
    return est.Throughput(cpu="test CPU", device="CPU", threads=2, precision="fp32", encoder=cfg.encoder,
                          image_size=cfg.image_size, grade_image_size=cfg.grade_image_size, batch_size=cfg.batch_size,
                          segmentation_images_per_second=40.0, grade_images_per_second=80.0,
                          measured="2026-12-07T03:00:00+00:00", load=0.0)


def test_run_images_count_every_stage_and_fit_as_the_loop_draws_them() -> None:
    bundled = TrainConfig.from_preset("bundled")
    assert est.run_images(bundled) == ((31 + 13) * 1200, 8 * 768)  # 1200 and 768 are whole batches of 16
    full = TrainConfig.from_preset("full")
    assert est.run_images(full) == (24 * 1200, 8 * 768 * (3 * 4 + 1))  # the grade's inner 4-fold CV, 3 variants
    assert est.run_images(replace(bundled, task="seg")) == (44 * 1200, 0)
    assert est.run_images(replace(bundled, task="grade")) == (0, 8 * 768)
    assert est.run_images(TrainConfig.from_preset("quick", seg_samples=20, batch_size=16))[0] == 2 * 16


def test_estimate_is_images_over_the_measured_rates() -> None:
    cfg = TrainConfig.from_preset("bundled")
    e = est.estimate_from(cfg, _fake_rates(cfg, CPU), cached=True)
    assert e.seconds == pytest.approx(52800 / 40 + 6144 / 80)
    assert "about 23 min" in e.text() and "measured 2026-12-07 03:00 UTC" in e.text()
    busy = replace(e, throughput=replace(e.throughput, load=50.0))
    assert "busy" in busy.text()
    assert est.duration_text(45) == "45 s" and est.duration_text(3 * 3600 + 300) == "3 h 05 min"


def test_probe_is_cached_per_setting_and_measured_once_when_two_ask_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def slow(cfg: TrainConfig, device: torch.device, steps: int = 3) -> est.Throughput:
        calls.append(1)
        time.sleep(0.5)
        return _fake_rates(cfg, device)

    monkeypatch.setattr(est, "measure", slow)
    cfg = TrainConfig.from_preset("bundled")
    assert est.cached_throughput(cfg, CPU) is None
    results: list[tuple[est.Throughput, bool]] = []
    threads = [threading.Thread(target=lambda: results.append(est.throughput(cfg, CPU))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and sorted(c for _, c in results) == [False, True]
    assert est.cached_throughput(cfg, CPU) == results[0][0]
    assert est.throughput(cfg, CPU)[1] is True and len(calls) == 1
    assert est.throughput(cfg, CPU, refresh=True)[1] is False and len(calls) == 2
    other = replace(cfg, image_size=64)  # another size is another probe
    assert est.cache_key(other, CPU) != est.cache_key(cfg, CPU)
    assert est.throughput(other, CPU)[1] is False and len(calls) == 3


def test_cache_key_follows_the_precision_the_cpu_would_use(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = TrainConfig.from_preset("bundled")
    monkeypatch.setattr(devices, "_native_bf16", lambda: True)
    with_bf16 = est.cache_key(cfg, CPU)
    monkeypatch.setattr(devices, "_native_bf16", lambda: False)
    assert est.cache_key(cfg, CPU) != with_bf16


def test_a_real_probe_times_training_steps() -> None:
    cfg = TrainConfig.from_preset("quick", image_size=32, grade_image_size=32, batch_size=2, threads=1)
    threads = torch.get_num_threads()
    rates = est.measure(cfg, CPU, steps=1)
    assert torch.get_num_threads() == threads  # the probe's thread count is put back
    assert rates.segmentation_images_per_second > 0 and rates.grade_images_per_second > 0
    assert (rates.image_size, rates.batch_size, rates.threads) == (32, 2, 1)
    assert rates.precision == ("bf16" if devices.cpu_info().native_bf16 else "fp32")


def test_dry_run_prints_the_precision_and_the_estimate_and_trains_nothing(monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str],
                                                                         tmp_path: Path, own_cache: Path) -> None:
    monkeypatch.setattr(est, "measure", _fake_rates)
    monkeypatch.setattr(devices, "_native_bf16", lambda: False)
    out = tmp_path / "weights"
    assert main(["--dry-run", "--preset", "bundled", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "precision: auto asked, fp32 used" in text and "estimate: about 23 min" in text
    assert not out.exists()
    assert main(["--dry-run", "--preset", "bundled", "--precision", "bf16"]) == 0
    text = capsys.readouterr().out
    assert "bf16 used" in text and "several times slower on this CPU" in text
    assert main(["--dry-run", "--image-size", "33"]) == 2
    assert "multiple of 32" in capsys.readouterr().err
    probes = list((own_cache / "throughput").glob("*.json"))  # one per precision used: fp32, then bf16
    assert len(probes) == 2 and all(json.loads(p.read_text())["segmentation_images_per_second"] == 40.0 for p in probes)
