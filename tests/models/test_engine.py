"""The engines (``lggdemo.models.engine``): ONNX Runtime gives PyTorch's masks and grades, the ONNX cache never serves a
stale or damaged file, a missing ONNX Runtime falls back to PyTorch, and concurrent predictions equal sequential ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lggdemo.data.kaggle import Clinical, load_image, scan_dataset
from lggdemo.device import threads_phrase
from lggdemo.inference.predictor import Predictor
from lggdemo.inference.wholepatient import predict_volume
from lggdemo.metrics.segmentation import dice
from lggdemo.models import weights
from lggdemo.models.engine import (
    EngineChoice,
    EngineError,
    FairRLock,
    OnnxEngine,
    TorchEngine,
    choose_engine,
    engine_from_modules,
    load_engine,
)
from lggdemo.models.engine import export as onnx_export
from lggdemo.models.networks import GradeConfig, SegConfig, build_grade, build_segmentation
from lggdemo.patient.readers.kaggle import index_volume

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[2]


def _bundled() -> Path:
    if not weights.is_complete(weights.BUNDLED_DIR):
        pytest.skip(f"no complete bundled weights in {weights.BUNDLED_DIR}")
    return weights.BUNDLED_DIR


@pytest.fixture(scope="module")
def engines() -> dict[str, Predictor]:
    """The bundled weights on both engines (trained weights: their logits sit far from the threshold, as in use)."""
    directory = _bundled()
    return {name: Predictor.from_directory(directory, "cpu", engine=name) for name in ("torch", "onnx")}


def _no_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError


# --- exactness ---------------------------------------------------------------------------------------


def _compare_patients(engines: dict[str, Predictor], root: Path, limit: int | None = None) -> list[str]:
    index = scan_dataset(root)
    checked = []
    for pid in index.patient_ids[:limit]:
        volume = index_volume(index, pid)
        clinical = Clinical(52.0, "male")
        ref, onnx = (predict_volume(engines[name], volume, clinical) for name in ("torch", "onnx"))
        assert dice(onnx.mask, ref.mask) >= 0.9999, pid
        assert abs(onnx.grade.raw_score - ref.grade.raw_score) <= 1e-4, pid
        assert abs(onnx.tumour_voxels - ref.tumour_voxels) <= max(1, ref.tumour_voxels // 10000), pid
        np.testing.assert_allclose(onnx.probability.astype(np.float32), ref.probability.astype(np.float32), atol=1e-3)
        assert onnx.device == f"CPU, ONNX Runtime, {threads_phrase(engines['onnx'].engine.threads)}"
        assert "PyTorch" in ref.device
        checked.append(pid)
    return checked


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
def test_onnx_masks_and_grades_equal_torch_on_the_phantoms(engines: dict[str, Predictor], synthetic_root: Path) -> None:
    assert len(_compare_patients(engines, synthetic_root, limit=4)) == 4


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
@pytest.mark.real_data
def test_onnx_masks_and_grades_equal_torch_on_real_patients(engines: dict[str, Predictor], real_root: Path) -> None:
    checked = _compare_patients(engines, real_root)
    assert len(checked) == 5


def test_slice_mode_and_lesson_use_the_engine(engines: dict[str, Predictor], synthetic_root: Path) -> None:
    from lggdemo.teach import masks_at, model_view, tta_uncertainty

    index = scan_dataset(synthetic_root)
    images = [load_image(r) for r in index.patients[index.patient_ids[1]][8:12]]
    ref, onnx = (engines[n].predict(images, Clinical(40.0, "female")) for n in ("torch", "onnx"))
    for a, b in zip(ref.slices, onnx.slices, strict=True):
        assert dice(a.mask, b.mask) >= 0.9999 and abs(a.grade_prob - b.grade_prob) <= 1e-4
    predictor = engines["onnx"]
    view = model_view(predictor.engine, predictor.seg_config, images[0])
    masks, probs = predictor.segment(np.stack(images[:1]))
    np.testing.assert_array_equal(masks_at(view).final, masks[0])  # the lesson shows the app's own mask
    np.testing.assert_array_equal(view.probability, probs[0])
    a = tta_uncertainty(predictor.engine, predictor.seg_config, images[0])
    b = tta_uncertainty(engines["torch"].engine, predictor.seg_config, images[0])
    np.testing.assert_allclose(a.std, b.std, atol=1e-4)


def test_gradcam_modules_load_only_when_a_heatmap_is_asked_for(tiny_weights: Path, synthetic_root: Path) -> None:
    from lggdemo.inference.gradcam import slice_cams

    predictor = Predictor.from_directory(tiny_weights, "cpu", engine="onnx")
    assert isinstance(predictor.engine, OnnxEngine)
    index = scan_dataset(synthetic_root)
    image = load_image(index.patients[index.patient_ids[0]][10])
    result = predictor.predict([image], Clinical(50.0, "male"))
    assert predictor._seg_model is None and predictor._grade_model is None  # predictions need no PyTorch module
    mask = np.zeros((256, 256), np.uint8)
    mask[100:140, 100:140] = 1
    grade, seg = slice_cams(predictor.grade_model, predictor.grade_config, predictor.seg_model, predictor.seg_config,
                            image, mask, result.clinical)
    assert grade.heatmap.shape == seg.heatmap.shape == (256, 256)  # type: ignore[union-attr]
    assert predictor._seg_model is not None and predictor._grade_model is not None


def test_gradcam_refuses_weights_swapped_after_loading(tiny_weights: Path, tmp_path: Path) -> None:
    import shutil

    directory = tmp_path / "w"
    shutil.copytree(tiny_weights, directory)
    predictor = Predictor.from_directory(directory, "cpu", engine="onnx")
    torch.manual_seed(5)
    cfg = SegConfig(encoder="resnet18", image_size=64)
    weights.save_model(directory / weights.SEG_FILE, build_segmentation(cfg), cfg)
    with pytest.raises(weights.WeightsError, match="changed after the models were loaded"):
        _ = predictor.seg_model


# --- choosing, and falling back ---------------------------------------------------------------------


def test_auto_is_onnx_on_a_cpu_and_torch_on_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LGG_ENGINE", raising=False)
    assert choose_engine(None, CPU) == EngineChoice("onnx", "auto")
    assert choose_engine(None, torch.device("cuda")) == EngineChoice("torch", "auto")
    asked = choose_engine("onnx", torch.device("cuda"))
    assert asked.name == "torch" and "CPU only" in (asked.note or "")
    monkeypatch.setenv("LGG_ENGINE", "torch")
    assert choose_engine(None, CPU).name == "torch"
    monkeypatch.setenv("LGG_ENGINE", "tensorrt")
    with pytest.raises(EngineError, match="Unknown engine 'tensorrt'"):
        choose_engine(None, CPU)


def test_without_onnxruntime_auto_falls_back_to_torch_and_says_so(tiny_weights: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _no_onnxruntime(monkeypatch)
    for asked in ("auto", "onnx"):
        predictor = Predictor.from_directory(tiny_weights, "cpu", engine=asked)
        assert isinstance(predictor.engine, TorchEngine)
        assert "ONNX Runtime is not installed" in (predictor.engine_note or "")
        assert predictor.device_text.startswith("CPU, PyTorch")
        assert predictor.seg_model is predictor.engine.seg  # Grad-CAM shares the engine's modules
    result = predictor.predict([np.full((256, 256, 3), 90, np.uint8)], Clinical(50.0, "male"))
    assert result.slices[0].mask.shape == (256, 256)


def test_a_failed_export_falls_back_to_torch(tiny_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LGG_CACHE_DIR", str(tmp_path / "cache"))

    def broken(*args: object, **kwargs: object) -> bytes:
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(onnx_export, "export_bytes", broken)
    engine = load_engine(tiny_weights, CPU, "onnx")
    assert isinstance(engine, TorchEngine) and "exporter exploded" in (engine.note or "")
    with pytest.raises(weights.WeightsError, match="Missing weights file"):  # missing weights are not a fallback
        load_engine(tmp_path / "nothing-here", CPU, "onnx")


def test_in_memory_models_match_torch_and_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """The trainer's and the benchmark's models: exported on the spot, same logits as PyTorch."""
    torch.manual_seed(0)
    seg_cfg, grade_cfg = SegConfig(encoder="resnet18", image_size=64), GradeConfig(image_size=32)
    seg, grade = build_segmentation(seg_cfg).eval(), build_grade(grade_cfg).eval()
    onnx = engine_from_modules(CPU, "onnx", seg=seg, seg_size=64, grade=grade, grade_size=32)
    ref = TorchEngine(seg, grade, CPU)
    x = torch.randn(3, 3, 64, 64).numpy()
    crops, clin = torch.randn(5, 3, 32, 32).numpy(), np.tile(np.array([[0.3, 0, 1, 0]], np.float32), (5, 1))
    assert isinstance(onnx, OnnxEngine)
    np.testing.assert_allclose(onnx.segment(x), ref.segment(x), atol=1e-4)
    np.testing.assert_allclose(onnx.grade(crops, clin), ref.grade(crops, clin), atol=1e-4)
    with pytest.raises(EngineError, match="no grade network"):
        engine_from_modules(CPU, "onnx", seg=seg, seg_size=64).grade(crops, clin)
    _no_onnxruntime(monkeypatch)
    from lggdemo.train.events import INFO
    from lggdemo.train.progress import Progress
    from lggdemo.train.scoring import scoring_engine

    events: list[dict[str, object]] = []
    fallback = scoring_engine(CPU, Progress([events.append]), seg=seg, seg_size=64)
    assert isinstance(fallback, TorchEngine)
    assert [e["message"] for e in events if e["event"] == INFO and "ONNX Runtime" in str(e["message"])]


# --- the cache -------------------------------------------------------------------------------------


def _entries(cache: Path, kind: str) -> list[Path]:
    return sorted((cache / "onnx").glob(f"{kind}-*.onnx"))


def test_changed_weights_give_a_new_export(tiny_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    cache = tmp_path / "cache"
    monkeypatch.setenv("LGG_CACHE_DIR", str(cache))
    directory = tmp_path / "w"
    shutil.copytree(tiny_weights, directory)
    build = _builder(directory)
    first = onnx_export.cached_export("segmentation", directory / weights.SEG_FILE, build)
    again = onnx_export.cached_export("segmentation", directory / weights.SEG_FILE, build)
    assert first.exported and not again.exported and again.path == first.path
    meta = json.loads(first.path.with_suffix(".json").read_text())
    assert meta["key"]["weights_sha256"] == weights.sha256_file(directory / weights.SEG_FILE)
    assert set(meta["key"]) >= {"torch", "onnx", "onnxruntime", "opset"}
    torch.manual_seed(7)
    cfg = SegConfig(encoder="resnet18", image_size=64)
    weights.save_model(directory / weights.SEG_FILE, build_segmentation(cfg), cfg)  # retrained weights
    changed = onnx_export.cached_export("segmentation", directory / weights.SEG_FILE, build)
    assert changed.exported and changed.path != first.path
    assert len(_entries(cache, "segmentation")) == 2
    x = torch.randn(2, 3, 64, 64).numpy()
    new = OnnxEngine.from_sources(changed.path, None).segment(x)
    np.testing.assert_allclose(new, TorchEngine(weights.load_segmentation(directory)[0]).segment(x), atol=1e-4)


def _builder(directory: Path):  # noqa: ANN202 -- the callable cached_export takes
    def build() -> tuple[torch.nn.Module, int]:
        module, cfg = weights.load_segmentation(directory)
        return module, cfg.image_size
    return build


@pytest.mark.parametrize("damage", ["truncated", "manifest", "garbage-with-its-manifest"])
def test_a_damaged_onnx_file_is_rebuilt_not_used(damage: str, tiny_weights: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    monkeypatch.setenv("LGG_CACHE_DIR", str(tmp_path / "cache"))
    entry = onnx_export.cached_export("segmentation", tiny_weights / weights.SEG_FILE, _builder(tiny_weights))
    good = entry.path.read_bytes()
    manifest = entry.path.with_suffix(".json")
    if damage == "truncated":
        entry.path.write_bytes(good[: len(good) // 2])
    elif damage == "manifest":
        manifest.write_text("{not json")
    else:  # bytes ONNX Runtime refuses, behind a manifest that vouches for them (damage after the hash was taken)
        junk = b"\x08\x07" + os.urandom(4096)
        entry.path.write_bytes(junk)
        doc = json.loads(manifest.read_text())
        manifest.write_text(json.dumps({**doc, "size": len(junk), "sha256": hashlib.sha256(junk).hexdigest()}))
    if damage != "garbage-with-its-manifest":
        assert not onnx_export.entry_is_valid(entry.path, entry.key)  # refused before ONNX Runtime ever reads it
    engine = load_engine(tiny_weights, CPU, "onnx", models=("segmentation",))
    assert isinstance(engine, OnnxEngine) and engine.note is None
    assert onnx_export.entry_is_valid(entry.path, entry.key)
    x = torch.randn(2, 3, 64, 64).numpy()
    np.testing.assert_allclose(engine.segment(x), TorchEngine(weights.load_segmentation(tiny_weights)[0]).segment(x),
                               atol=1e-4)


_EXPORT_SCRIPT = """
import json, sys, time
from pathlib import Path
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.01)
from lggdemo.models import weights
from lggdemo.models.engine.export import cached_export
directory = Path(sys.argv[1])
def build():
    module, cfg = weights.load_segmentation(directory)
    return module, cfg.image_size
entry = cached_export("segmentation", directory / weights.SEG_FILE, build)
print(json.dumps({"exported": entry.exported, "path": str(entry.path)}))
"""


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
def test_two_processes_exporting_at_once_make_one_good_file(tiny_weights: Path, tmp_path: Path) -> None:
    cache, go = tmp_path / "cache", tmp_path / "go"
    env = {**os.environ, "LGG_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", _EXPORT_SCRIPT, str(tiny_weights), str(go)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = []
    try:
        time.sleep(3)  # both are importing (or waiting on the go file) when it appears
        go.touch()
        for p in procs:
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
            outs.append(json.loads(out.strip().splitlines()[-1]))
    finally:  # a failed or interrupted test leaves no process polling for its go file
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    assert sorted(o["exported"] for o in outs) == [False, True]  # one exported, the other waited and reused it
    assert outs[0]["path"] == outs[1]["path"]
    files = _entries(cache, "segmentation")
    assert len(files) == 1 and not list((cache / "onnx").glob(".*"))  # no temp file left behind
    key = onnx_export.export_key("segmentation", tiny_weights / weights.SEG_FILE)
    assert onnx_export.entry_is_valid(files[0], key)


# --- concurrency ----------------------------------------------------------------------------------


def test_threads_predicting_at_once_equal_one_at_a_time(tiny_weights: Path, synthetic_root: Path) -> None:
    predictor = Predictor.from_directory(tiny_weights, "cpu", engine="onnx")
    index = scan_dataset(synthetic_root)
    cases = [[load_image(r) for r in index.patients[pid][6:9]] for pid in index.patient_ids[:4]]
    clinical = Clinical(61.0, "female")
    alone = [predictor.predict(c, clinical) for c in cases]
    together: dict[int, object] = {}
    barrier = threading.Barrier(len(cases))

    def run(i: int) -> None:
        barrier.wait()
        together[i] = predictor.predict(cases[i], clinical)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, ref in enumerate(alone):
        got = together[i]
        for a, b in zip(ref.slices, got.slices, strict=True):  # type: ignore[attr-defined]
            np.testing.assert_array_equal(a.mask, b.mask)
            np.testing.assert_allclose(a.probability, b.probability, atol=1e-6)
            assert a.grade_logit == pytest.approx(b.grade_logit, abs=1e-6)


def test_the_model_lock_serves_waiters_in_arrival_order() -> None:
    lock = FairRLock()
    order: list[int] = []
    lock.acquire()
    with lock:  # reentrant: the holder takes it again for free
        assert lock.held_by_me()
    threads = []
    for i in range(5):
        t = threading.Thread(target=lambda i=i: (lock.acquire(), order.append(i), lock.release()))
        t.start()
        threads.append(t)
        deadline = time.monotonic() + 10
        while len(lock._queue) < i + 1 and time.monotonic() < deadline:  # wait until it queues behind the others
            time.sleep(0.001)
    lock.release()
    for t in threads:
        t.join()
    assert order == [0, 1, 2, 3, 4]
    with pytest.raises(RuntimeError, match="does not hold"):
        lock.release()


# --- the command lines ----------------------------------------------------------------------------


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
def test_command_lines_take_engine(tiny_weights: Path, synthetic_root: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``--engine`` on predict, evaluate and bench; bench times both engines side by side with their ratio."""
    import functools

    from lggdemo import evaluate, predict
    from lggdemo.bench import cli as bench
    from lggdemo.bench import infer as bench_infer

    monkeypatch.setattr(bench_infer, "bench_whole_patient", functools.partial(bench_infer.bench_whole_patient, n_slices=6))

    patient = synthetic_root / scan_dataset(synthetic_root).patient_ids[0]
    assert predict.main([str(patient), "--out", str(tmp_path / "p"), "--weights", str(tiny_weights), "--device", "cpu",
                         "--no-grade", "--engine", "torch"]) == 0
    row = json.loads((tmp_path / "p" / "report.json").read_text())["patients"][0]
    assert row["device"].startswith("CPU, PyTorch")
    assert evaluate.main(["--data", str(synthetic_root), "--weights", str(tiny_weights), "--patients",
                          patient.name, "--device", "cpu", "--engine", "onnx", "--json", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["engine"].startswith("CPU, ONNX Runtime")
    out = tmp_path / "b.json"
    assert bench.main(["--infer", "--device", "cpu", "--engine", "torch,onnx", "--data", str(synthetic_root),
                       "--seg-encoder", "resnet18", "--seg-size", "64", "--grade-size", "32", "--repeats", "1",
                       "--warmup", "0", "--slices", "2", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["cpu/torch"]["engine"] == "torch" and doc["cpu/onnx"]["engine"] == "onnx"
    ratios = doc["cpu/onnx_vs_torch"]
    assert ratios["mask_and_grade_1_slice_ratio"] > 0
    assert ratios["whole_patient_6_slices_mask_grade_3d_ratio_vs_target"].split()[0] in ("meets", "misses")
    assert "ONNX Runtime / PyTorch on cpu" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench.main(["--infer", "--engine", "tensorrt"])
