"""The benchmark CLI runs end to end on tiny configs and writes its JSON (no timing is asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lggdemo.bench import cli as bench


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
def test_infer_writes_every_measurement(tmp_path: Path, synthetic_root: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    rc = bench.main(["--infer", "--device", "cpu", "--data", str(synthetic_root), "--seg-encoder", "resnet18",
                     "--seg-size", "64", "--grade-size", "32", "--repeats", "1", "--warmup", "0", "--slices", "2",
                     "--json", str(out)])
    assert rc == 0
    cpu = json.loads(out.read_text())["cpu"]
    keys = [k for k in cpu if k.endswith("_ms")]
    assert {"mask_and_grade_1_slice_ms", "mask_grade_and_both_gradcams_1_slice_ms", "patient_2_slices_batch_ms",
            "grade_gradcam_1_slice_ms", "segmentation_gradcam_1_slice_ms"} <= set(keys)
    assert all(cpu[k] > 0 for k in keys)
    assert cpu["segmentation"] == "resnet18 U-Net @ 64px" and cpu["models"].startswith("untrained")
    assert cpu["mask_and_grade_1_slice_ms_vs_target"].split()[0] in ("meets", "misses")
    printed = capsys.readouterr().out
    assert "inference on cpu" in printed and "mask_and_grade_1_slice_ms" in printed


def test_train_prints_the_trainers_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    import lggdemo.train as train

    seen = {}

    def fake(device: str = "auto", image_size: int | None = None) -> dict[str, object]:
        seen.update(device=device, image_size=image_size)
        return {"device": device, "segmentation": {"images_per_s": 12.5}, "grade": {"images_per_s": 30.0}}

    monkeypatch.setattr(train, "benchmark_training", fake)
    out = tmp_path / "train.json"
    assert bench.main(["--train", "--device", "cpu", "--image-size", "96", "--json", str(out)]) == 0
    assert seen == {"device": "cpu", "image_size": 96}
    assert json.loads(out.read_text())["cpu"]["segmentation"]["images_per_s"] == 12.5
    assert "segmentation.images_per_s  12.5" in capsys.readouterr().out


def test_train_world_size_reports_the_distributed_ratio(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import lggdemo.train as train

    seen = {}

    def fake(world_size: int = 2, device: str = "auto", image_size: int | None = None) -> dict[str, object]:
        seen.update(world_size=world_size, device=device, image_size=image_size)
        return {"world_size": world_size, "segmentation": {"ratio": 0.8}}

    monkeypatch.setattr(train, "benchmark_distributed", fake)
    monkeypatch.setattr(train, "benchmark_training", lambda **kw: pytest.fail("one process only was asked for"))
    assert bench.main(["--train", "--device", "cpu", "--world-size", "2", "--image-size", "64"]) == 0
    assert seen == {"world_size": 2, "device": "cpu", "image_size": 64}
    assert "segmentation.ratio  0.8" in capsys.readouterr().out


@pytest.mark.slow
def test_distributed_benchmark_times_two_gloo_processes() -> None:
    from lggdemo.train import benchmark_distributed

    res = benchmark_distributed(2, device="cpu", image_size=32, steps=1)
    assert res["world_size"] == 2 and res["backend"] == "gloo" and res["threads_per_rank"] >= 1
    for name in ("segmentation", "grade"):
        r = res[name]
        assert r["images_per_second_2_processes"] > 0 and r["images_per_second_1_process"] > 0
        assert r["ratio"] == pytest.approx(r["images_per_second_2_processes"] / r["images_per_second_1_process"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_missing_device_is_a_clean_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--infer", "--device", "cuda"]) == 2
    assert "CUDA was chosen" in capsys.readouterr().err


def test_load_drives_concurrent_sessions_without_errors(tmp_path: Path, synthetic_root: Path, tiny_weights: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """``--load 2`` on the tiny models and the phantoms: every click of both sessions is timed and none fails."""
    out = tmp_path / "load.json"
    rc = bench.main(["--load", "2", "--clicks", "2", "--device", "cpu", "--data", str(synthetic_root),
                     "--weights", str(tiny_weights), "--json", str(out)])
    load = json.loads(out.read_text())["load"]
    assert rc == 0 and load["errors"] == []
    assert load["sessions"] == 2 and load["clicks_per_session"] == 2
    assert 0 < load["single_user_p50_s"] <= load["single_user_p95_s"]
    assert 0 < load["p50_s"] <= load["p95_s"] <= load["max_s"]
    assert load["clicks_per_s"] > 0 and load["peak_rss_mb"] >= load["peak_rss_single_mb"] > 0
    assert load["models"] == f"weights {tiny_weights}" and "MODEL_LOCK" in load["serialised_by"]
    assert "2 concurrent Predict sessions" in capsys.readouterr().out


def test_load_counts_a_failing_click_as_an_error(synthetic_root: Path, tiny_weights: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from lggdemo.bench import load as loadtest

    real = loadtest.example_click

    def second_patient_breaks(predictor: object, index: object, which: int) -> None:
        if which == 1:
            raise RuntimeError("out of memory")
        real(predictor, index, which)  # type: ignore[arg-type]

    monkeypatch.setattr(loadtest, "example_click", second_patient_breaks)
    report = loadtest.run_load(2, clicks=2, data=synthetic_root, weights_dir=tiny_weights, device="cpu")
    assert sorted(report.errors) == ["session 0: RuntimeError: out of memory", "session 1: RuntimeError: out of memory",
                                     "single user: RuntimeError: out of memory", "warm-up: RuntimeError: out of memory"]
    with pytest.raises(SystemExit):
        bench.main(["--load", "0"])


def test_percentile_is_nearest_rank() -> None:
    from lggdemo.bench.load import percentile

    assert percentile([3.0, 1.0, 2.0, 10.0], 50) == 2.0
    assert percentile([3.0, 1.0, 2.0, 10.0], 95) == 10.0
    assert percentile([5.0], 95) == 5.0
