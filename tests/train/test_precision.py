"""Training precision chosen by the hardware (issue 27): ``auto`` is bf16 only where the CPU computes bf16 itself
(or on CUDA), fp32 elsewhere; an explicit bf16 on a CPU without it trains but warns; the card says what was used,
and cross-validation compares the precision used, letting an fp32 run carry a bf16 estimate only with its caveat."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_runs import tiny_config

from lggdemo import device as devices
from lggdemo.evaluation.crossval import CrossValError, precision_caveat, precision_used, record, same_recipe, seg_recipe
from lggdemo.evaluation.grade_oof import grade_recipe, record_grade
from lggdemo.models.weights import read_card, write_card
from lggdemo.train import run
from lggdemo.train.loop import amp_dtype, channels_last, precision_warning, resolve_precision

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[2]
CV21 = ROOT / "docs" / "experiments" / "cv21"


@pytest.fixture(params=[False, True], ids=["no-native-bf16", "native-bf16"])
def native(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    monkeypatch.setattr(devices, "_native_bf16", lambda: request.param)
    return bool(request.param)


def test_cpu_info_reads_the_hardware() -> None:
    info = devices.cpu_info()
    assert info.model and info.capability == str(torch.backends.cpu.get_cpu_capability())
    expected = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert info.native_bf16 is bool(expected)
    assert set(info.to_dict()) == {"model", "capability", "native_bf16"}


def test_auto_follows_the_capability_and_explicit_choices_are_kept(native: bool) -> None:
    assert resolve_precision(CPU, "auto") == ("bf16" if native else "fp32")
    assert amp_dtype(CPU, "auto") == (torch.bfloat16 if native else None)
    assert channels_last(CPU, "auto") and not channels_last(CPU, "fp32")  # fp32 + channels-last: faster on AVX2
    assert resolve_precision(CPU, "fp32") == "fp32" and amp_dtype(CPU, "fp32") is None
    assert resolve_precision(CPU, "bf16") == "bf16" and amp_dtype(CPU, "bf16") == torch.bfloat16
    warning = precision_warning(CPU, "bf16")
    if native:
        assert warning is None
    else:
        assert warning is not None and "several times slower on this CPU" in warning
    assert precision_warning(CPU, "auto") is None and precision_warning(CPU, "fp32") is None


def _bundled_run(root: Path, out: Path, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> tuple[dict, list[dict], set]:
    """The bundled preset's own config (two U-Net stages and the grade model) at the tiny sizes, recording the
    dtype every autocast region of the run was entered with."""
    seen: set[Any] = set()
    real = torch.autocast

    def spy(device_type: str, dtype: Any = None, enabled: bool = True, **more: Any) -> Any:
        seen.add(dtype if enabled else None)
        return real(device_type, dtype=dtype, enabled=enabled, **more)

    monkeypatch.setattr(torch, "autocast", spy)
    events: list[dict] = []
    cfg = tiny_config(root, out, "bundled", **{"refine_epochs": 1, **kw})
    run(cfg, [events.append])
    return read_card(out), events, seen


@pytest.mark.slow  # trains (a tiny run): make test, not make test-fast
def test_bundled_preset_trains_in_what_the_cpu_does_fastest(native: bool, synthetic_root: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    card, events, seen = _bundled_run(synthetic_root, tmp_path / "bundled", monkeypatch)
    used = "bf16" if native else "fp32"
    assert seen == {torch.bfloat16 if native else None}
    assert card["train_config"]["precision"] == "auto"
    assert card["precision"]["requested"] == "auto" and card["precision"]["used"] == used
    assert card["precision"]["channels_last"] and "estimated with bf16 fold models" in card["precision"]["note"]
    assert card["cpu"]["native_bf16"] is native and card["cpu"]["model"] and card["cpu"]["capability"]
    assert [s["precision"] for s in seg_recipe(card)] == [used, used]
    assert grade_recipe(card)["precision"] == used
    assert not [e for e in events if e["event"] == "info" and "slower" in e["message"]]


@pytest.mark.slow  # trains (a tiny run): make test, not make test-fast
def test_explicit_bf16_without_native_bf16_trains_anyway_and_warns(synthetic_root: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "_native_bf16", lambda: False)
    card, events, seen = _bundled_run(synthetic_root, tmp_path / "slow", monkeypatch, precision="bf16", task="seg",
                                      refine_epochs=0)
    assert seen == {torch.bfloat16}
    assert card["precision"] == {**card["precision"], "requested": "bf16", "used": "bf16"}
    (warning,) = [e["message"] for e in events if e["event"] == "info" and "slower" in e["message"]]
    assert "several times slower on this CPU" in warning and "no native bfloat16" in warning


def _cv21(name: str) -> dict:
    path = CV21 / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"{path} is not in this checkout")
    return json.loads(path.read_text())


def _as_run_on(card: dict, requested: str, used: str) -> dict:
    """``card`` as if its run had asked for ``requested`` and recorded ``used`` (what a run writes since issue 27)."""
    out = copy.deepcopy(card)
    out["train_config"]["precision"] = requested
    seg = out["segmentation"]
    if isinstance(seg.get("train_config"), dict):
        seg["train_config"]["precision"] = requested
    if seg.get("initialised_from"):
        seg["initialised_from"]["train_config"]["precision"] = requested
        seg["initialised_from"]["precision_used"] = used
    out["precision"] = {"requested": requested, "used": used}
    return out


def test_an_auto_run_on_a_bf16_cpu_is_the_same_recipe_as_c1s_explicit_bf16() -> None:
    explicit = _cv21("bundled-C1-card")
    auto_bf16 = _as_run_on(explicit, "auto", "bf16")
    auto_fp32 = _as_run_on(explicit, "auto", "fp32")
    assert [s["precision"] for s in seg_recipe(explicit)] == ["bf16", "bf16"]
    assert same_recipe(seg_recipe(auto_bf16), seg_recipe(explicit))
    assert not same_recipe(seg_recipe(auto_fp32), seg_recipe(explicit))
    # Older cards name only what was asked: "auto" then meant float32 on a CPU.
    legacy = {"precision": "auto"}
    assert precision_used(legacy, None, "CPU (2 threads)") == "fp32"
    assert precision_used(legacy, None, "CUDA GPU (H100)") == "auto"
    assert precision_used(legacy, "bf16", "CPU (2 threads)") == "bf16"


def test_fp32_weights_carry_the_bf16_estimate_with_its_caveat_and_another_recipe_is_refused(tmp_path: Path) -> None:
    pooled = _cv21("pooled-C1")
    fp32 = _as_run_on(_cv21("bundled-C1-card"), "auto", "fp32")
    assert precision_caveat(seg_recipe(fp32), pooled["recipe"]) is not None
    folder = tmp_path / "fp32"
    write_card(folder, fp32)
    record(folder, pooled)
    cv = read_card(folder)["segmentation"]["cross_validation"]
    assert cv["metrics"] == pooled["metrics"]
    assert "estimated with bf16 fold models" in cv["precision_note"] and "in fp32" in cv["precision_note"]

    same = tmp_path / "same"
    write_card(same, _as_run_on(_cv21("bundled-C1-card"), "auto", "bf16"))
    record(same, pooled)
    assert "precision_note" not in read_card(same)["segmentation"]["cross_validation"]

    longer = copy.deepcopy(fp32)
    longer["segmentation"]["train_config"]["seg_epochs"] = 20
    other = tmp_path / "other"
    write_card(other, longer)
    before = (other / "model_card.json").read_bytes()
    with pytest.raises(CrossValError, match="another recipe"):
        record(other, pooled)
    assert (other / "model_card.json").read_bytes() == before


def test_grade_estimate_crosses_precision_only_with_its_caveat(tmp_path: Path) -> None:
    pooled = _cv21("grade-oof-C1")
    fp32 = _as_run_on(_cv21("bundled-C1-card"), "auto", "fp32")
    folder = tmp_path / "fp32"
    write_card(folder, fp32)
    record_grade(folder, pooled)
    oof = read_card(folder)["grade"]["out_of_fold"]
    assert "estimated with bf16 fold models" in oof["precision_note"]
    smaller = copy.deepcopy(fp32)
    smaller["train_config"]["grade_image_size"] = 32
    write_card(tmp_path / "other", smaller)
    with pytest.raises(CrossValError, match="another recipe"):
        record_grade(tmp_path / "other", pooled)
