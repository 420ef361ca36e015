"""A bench that means the same on every machine: the U-Net's GFLOP/s against this machine's own measured fp32 peak;
and weights it cannot use are refused with a reason (exit 2), never replaced by untrained stand-ins."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lggdemo.bench import cli as bench
from lggdemo.bench.infer import matmul_peak_gflops, unet_gflop_per_pass
from lggdemo.models.networks import SegConfig
from lggdemo.models.weights import SEG_FILE


def test_unet_flops_follow_the_architecture() -> None:
    """The bundled U-Net (ResNet18 encoder, 128 px) is about 2.7 GFLOP a pass (issue 27); FLOPs grow with the area."""
    at_128 = unet_gflop_per_pass(SegConfig(encoder="resnet18", image_size=128))
    at_64 = unet_gflop_per_pass(SegConfig(encoder="resnet18", image_size=64))
    assert 2.4 < at_128 < 3.0
    assert at_128 / at_64 == pytest.approx(4.0, rel=0.02)


def test_matmul_peak_is_a_rate() -> None:
    assert matmul_peak_gflops(n=256, repeats=2) > 0


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
def test_infer_reports_gflops_and_share_of_the_measured_peak(tmp_path: Path, synthetic_root: Path,
                                                             tiny_weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    rc = bench.main(["--infer", "--device", "cpu", "--engine", "torch", "--data", str(synthetic_root), "--weights",
                     str(tiny_weights), "--repeats", "1", "--warmup", "0", "--slices", "2", "--json", str(out)])
    assert rc == 0
    cpu = json.loads(out.read_text())["cpu"]
    assert cpu["models"] == f"weights {tiny_weights}"
    gflop = unet_gflop_per_pass(SegConfig(encoder="resnet18", image_size=64))
    assert cpu["unet_gflop_per_pass"] == pytest.approx(gflop, abs=1e-3)
    assert cpu["fp32_matmul_peak_gflops"] > 0 and cpu["unet_network_gflops"] > 0
    assert cpu["unet_network_share_of_peak"] == pytest.approx(cpu["unet_network_gflops"] / cpu["fp32_matmul_peak_gflops"],
                                                             abs=2e-3)
    passes = cpu["whole_patient_88_unet_passes"]
    assert 0 < passes <= 2 * 88
    assert cpu["whole_patient_segment_gflops"] == pytest.approx(
        gflop * passes / (cpu["whole_patient_88_part_segment_ms"] / 1000), rel=0.01, abs=0.06)  # printed to 0.1
    assert "unet_network_share_of_peak" in capsys.readouterr().out


def _broken(kind: str, tiny_weights: Path, tmp_path: Path) -> Path:
    folder = tmp_path / kind
    if kind == "missing-folder":
        return folder
    shutil.copytree(tiny_weights, folder)
    if kind == "missing-file":
        (folder / SEG_FILE).unlink()
    elif kind == "corrupt-file":
        data = bytearray((folder / SEG_FILE).read_bytes())
        data[-1] ^= 0xFF
        (folder / SEG_FILE).write_bytes(bytes(data))
    elif kind == "no-card":
        (folder / "model_card.json").unlink()
    return folder


@pytest.mark.parametrize(("kind", "says"), [("missing-folder", "no such folder"), ("missing-file", "is missing"),
                                            ("corrupt-file", "SHA-256"), ("no-card", "model card")])
@pytest.mark.parametrize("mode", [["--infer"], ["--load", "1"], ["--teach"]])
def test_weights_it_cannot_use_exit_2_and_say_why(kind: str, says: str, mode: list[str], tiny_weights: Path,
                                                  tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _broken(kind, tiny_weights, tmp_path)
    assert bench.main([*mode, "--device", "cpu", "--weights", str(folder), "--repeats", "1"]) == 2
    err = capsys.readouterr().err
    assert says in err and str(folder) in err
