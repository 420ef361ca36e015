"""``--infer``: what a Predict visitor waits for, timed on the active weights or untrained models.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lggdemo  # noqa: F401  (torchvision guard before smp / grad-cam)
from lggdemo.data.kaggle import Clinical, load_image, load_mask, scan_dataset
from lggdemo.data.synthetic import default_root
from lggdemo.device import choose_device
from lggdemo.inference.gradcam import grade_cam, segmentation_cam
from lggdemo.inference.predictor import Predictor
from lggdemo.inference.wholepatient import predict_volume
from lggdemo.models.networks import GradeConfig, SegConfig, build_grade, build_segmentation
from lggdemo.models.postprocess import keep_main_components_3d
from lggdemo.models.preprocess import prepare_images, slices_with_head
from lggdemo.models.weights import GRADE_FILE, SEG_FILE, WeightsError, active_dir, is_complete, load_card, sha256_file
from lggdemo.patient.readers.kaggle import build_volume, index_volume
from lggdemo.viz.view3d import figure_3d

#: Targets for one slice on a 2-core CPU (reported, never asserted): mask + grade (issue 27, docs/performance.md).
TARGET_MASK_GRADE_MS = 30.0


TARGET_WITH_CAMS_MS = 500.0


def median_ms(fn: Callable[[], object], repeats: int, warmup: int, sync: Callable[[], None]) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t) * 1000.0)
    return statistics.median(times)


def sample_slices(n: int, root: Path | None = None) -> list[Any]:
    """``n`` slices of one dataset (default: the built-in phantoms), tumour-bearing ones first, repeated if short."""

    index = scan_dataset(root or default_root())
    recs = [r for pid in index.patient_ids for r in index.patients[pid]]
    tumour = []
    for r in recs:
        if load_mask(r).any():
            tumour.append(r)
            if len(tumour) >= n:
                break
    picks = (tumour + [r for r in recs if r not in tumour])[:n]
    while len(picks) < n:
        picks += picks[: n - len(picks)]
    return [load_image(r) for r in picks]


def check_usable(directory: Path) -> None:
    """Raise :class:`WeightsError` saying why a weights folder given with ``--weights`` cannot be timed.

    Without this the benchmark timed untrained stand-in models whenever the folder was incomplete, and printed
    their times as if they were the folder's.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise WeightsError(f"--weights {directory}: no such folder")
    try:
        card = load_card(directory)
    except (WeightsError, ValueError) as exc:
        raise WeightsError(f"--weights {directory}: its model card cannot be read ({exc})") from None
    for name in (SEG_FILE, GRADE_FILE):
        expected, path = card.file_sha256(name), directory / name
        if not path.is_file():
            raise WeightsError(f"--weights {directory}: {name} is missing")
        if not expected:
            raise WeightsError(f"--weights {directory}: its card lists no {name}")
        if sha256_file(path) != expected:
            raise WeightsError(f"--weights {directory}: {name} does not match the SHA-256 its card records "
                               "(corrupt or replaced)")


def build_predictor(device: str, weights_dir: Path | None, seg_encoder: str | None, seg_size: int | None,
                    grade_size: int | None, engine: str | None = None) -> tuple[Any, str]:
    """The active (or given) weights, or untrained models at the requested configs, on ``engine`` (None:
    ``$LGG_ENGINE``, else auto); says which."""
    import torch


    dev = choose_device(device)
    overrides = any(v is not None for v in (seg_encoder, seg_size, grade_size))
    if weights_dir is not None and not overrides:  # asked for by name: time them or say why not, never stand-ins
        check_usable(weights_dir)
        return Predictor.from_directory(weights_dir, dev, engine=engine), f"weights {weights_dir}"
    directory = active_dir()
    if not overrides and is_complete(directory):
        return Predictor.from_directory(directory, dev, engine=engine), f"weights {directory}"
    seg_cfg = SegConfig(**{k: v for k, v in (("encoder", seg_encoder), ("image_size", seg_size)) if v is not None})
    grade_cfg = GradeConfig(**({"image_size": grade_size} if grade_size is not None else {}))
    torch.manual_seed(0)
    predictor = Predictor(build_segmentation(seg_cfg), seg_cfg, build_grade(grade_cfg), grade_cfg, dev,
                          version="untrained-benchmark", engine=engine)
    return predictor, "untrained models (speed only)"


def bench_infer(device: str = "cpu", *, repeats: int = 10, warmup: int = 2, patient_slices: int = 40,
                weights_dir: Path | None = None, seg_encoder: str | None = None, seg_size: int | None = None,
                grade_size: int | None = None, data: Path | None = None, engine: str | None = None) -> dict[str, Any]:
    """Median latencies in milliseconds for one device and engine."""
    import numpy as np
    import torch


    predictor, source = build_predictor(device, weights_dir, seg_encoder, seg_size, grade_size, engine)
    dev = predictor.device

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    images = sample_slices(patient_slices, data)
    one = np.stack(images[:1])
    clinical = Clinical(45.0, "female")
    masks, _ = predictor.segment(one)
    mask = masks[0]
    if not mask.any():  # untrained models: give the grade crop and the CAMs a realistic tumour to work on
        mask = np.zeros_like(mask)
        mask[90:150, 80:140] = 1

    def full_chain() -> None:
        res = predictor.predict(images[:1], clinical)
        m = res.slices[0].mask if res.slices[0].mask.any() else mask
        grade_cam(predictor.grade_model, predictor.grade_config, images[0], m, clinical)
        segmentation_cam(predictor.seg_model, predictor.seg_config, images[0], m)

    timings = {
        "mask_1_slice_ms": lambda: predictor.segment(one),
        "grade_1_slice_ms": lambda: predictor.grade(one, mask[None], clinical),
        "mask_and_grade_1_slice_ms": lambda: predictor.predict(images[:1], clinical),
        "grade_gradcam_1_slice_ms": lambda: grade_cam(predictor.grade_model, predictor.grade_config, images[0], mask,
                                                      clinical),
        "segmentation_gradcam_1_slice_ms": lambda: segmentation_cam(predictor.seg_model, predictor.seg_config,
                                                                    images[0], mask),
        "mask_grade_and_both_gradcams_1_slice_ms": full_chain,
    }
    results: dict[str, Any] = {
        "device": predictor.device_text,
        "engine": predictor.engine.name,
        **({"engine_note": predictor.engine_note} if predictor.engine_note else {}),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "models": source,
        "segmentation": f"{predictor.seg_config.encoder} U-Net @ {predictor.seg_config.image_size}px",
        "grade": f"ResNet50 @ {predictor.grade_config.image_size}px crops",
        "repeats": repeats,
    }
    for name, fn in timings.items():
        results[name] = round(median_ms(fn, repeats, warmup, sync), 1)
    patient_repeats = max(1, repeats // 3)
    results[f"patient_{patient_slices}_slices_batch_ms"] = round(
        median_ms(lambda: predictor.predict(images, clinical), patient_repeats, 1, sync), 1)
    results["batch_size"] = predictor.batch_size
    results.update(bench_whole_patient(predictor, data, sync, repeats=max(1, repeats // 3)))
    results.update(roofline(predictor, images, results, sync, repeats=max(1, repeats // 3)))
    if dev.type == "cpu":
        for key, target in (("mask_and_grade_1_slice_ms", TARGET_MASK_GRADE_MS),
                            ("mask_grade_and_both_gradcams_1_slice_ms", TARGET_WITH_CAMS_MS)):
            over = results[key] - target
            ratio = results[key] / target
            results[f"{key}_vs_target"] = (f"meets {target:.0f} ms" if over <= 0
                                           else f"misses {target:.0f} ms by {over:.0f} ms ({ratio:.1f}×)")
    return results


#: Whole-patient targets on this CPU (reported, never asserted): an 88-slice patient, and its 3D view.
TARGET_PATIENT_88_MS = 1500.0  # 1.5 s, and at most half the PyTorch engine's time in the same run
TARGET_VIEW3D_MS = 1000.0


def bench_whole_patient(predictor: Any, data: Path | None, sync: Callable[[], None], *, n_slices: int = 88,
                        repeats: int = 3) -> dict[str, Any]:
    """An 88-slice patient (the dataset's largest, tiled when shorter): mask + grade + 3D post-processing
    (``wholepatient.predict_volume``, the page's and the CLI's path), and the 3D view's build."""
    import numpy as np


    index = scan_dataset(data or default_root())
    pid = max(index.patient_ids, key=lambda p: len(index.patients[p]))
    vol = index_volume(index, pid)
    reps = -(-n_slices // vol.n_slices)
    slices = np.concatenate([vol.slices] * reps)[:n_slices]
    vol = build_volume(pid, slices, None, (slices.shape[1], slices.shape[2]), "kaggle", [pid])
    clinical = Clinical(45.0, "female")
    pred = predict_volume(predictor, vol, clinical)
    mask = pred.mask if pred.mask.any() else (slices[..., 1] > 200).astype(np.uint8)  # untrained: any blob to mesh
    out = {
        f"whole_patient_{n_slices}_slices_mask_grade_3d_ms": round(
            median_ms(lambda: predict_volume(predictor, vol, clinical), repeats, 0, sync), 1),
        f"view3d_{n_slices}_slices_ms": round(
            median_ms(lambda: figure_3d(slices, mask, (2.5, 0.9, 0.9)), repeats, 1, lambda: None), 1),
        "whole_patient_source": f"{pid} ({len(index.patients[pid])} slices{', tiled' if reps > 1 else ''})",
    }
    # where the time goes: the same three steps, one at a time
    out[f"whole_patient_{n_slices}_unet_passes"] = int(slices_with_head(slices).sum()) * \
        (2 if predictor.seg_config.flip_tta else 1)

    raw, _ = predictor.segment(slices)
    tumour = np.flatnonzero(mask.reshape(n_slices, -1).any(1)) if mask.any() else np.arange(n_slices)
    out[f"whole_patient_{n_slices}_part_segment_ms"] = round(
        median_ms(lambda: predictor.segment(slices), 1, 0, sync), 1)
    out[f"whole_patient_{n_slices}_part_3d_postprocess_ms"] = round(
        median_ms(lambda: keep_main_components_3d(raw), repeats, 0, lambda: None), 1)
    out[f"whole_patient_{n_slices}_part_grade_{len(tumour)}_tumour_slices_ms"] = round(
        median_ms(lambda: predictor.grade(slices[tumour], mask[tumour], clinical), 1, 0, sync), 1)
    if predictor.device.type == "cpu":
        for key, target in ((f"whole_patient_{n_slices}_slices_mask_grade_3d_ms", TARGET_PATIENT_88_MS),
                            (f"view3d_{n_slices}_slices_ms", TARGET_VIEW3D_MS)):
            out[f"{key}_vs_target"] = f"meets {target:.0f} ms" if out[key] <= target else \
                f"misses {target:.0f} ms by {out[key] - target:.0f} ms ({out[key] / target:.1f}×)"
    return out


#: The ONNX engine's whole-patient time may be at most this share of PyTorch's in the same run.
TARGET_ONNX_VS_TORCH = 0.5


def compare_engines(torch_run: dict[str, Any], onnx_run: dict[str, Any]) -> dict[str, Any]:
    """ONNX/PyTorch time ratios for every timing both runs have, and the whole patient's against its target."""
    out: dict[str, Any] = {}
    for key, value in torch_run.items():
        other = onnx_run.get(key)
        if key.endswith("_ms") and isinstance(value, (int, float)) and isinstance(other, (int, float)) and value > 0:
            out[key.removesuffix("_ms") + "_ratio"] = round(other / value, 2)
    for key in [k for k in out if k.startswith("whole_patient_") and k.endswith("_mask_grade_3d_ratio")]:
        ratio = out[key]
        out[f"{key}_vs_target"] = (f"meets {TARGET_ONNX_VS_TORCH}×" if ratio <= TARGET_ONNX_VS_TORCH
                                   else f"misses {TARGET_ONNX_VS_TORCH}× ({ratio}×)")
    return out


def unet_gflop_per_pass(config: SegConfig) -> float:
    """GFLOP of one U-Net pass over one image at its input side (``torch.utils.flop_counter``: a multiply-add is
    two FLOPs). Depends on the architecture only, so an untrained copy is counted."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = build_segmentation(config).eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, config.image_size, config.image_size))
    return counter.get_total_flops() / 1e9


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """This machine's measured fp32 peak: the best of ``repeats`` timed ``n``x``n`` sgemms (PyTorch's BLAS, its
    threads), in GFLOP/s. A roofline the U-Net's rate is read against, the same on any CPU."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up: threads, caches
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def roofline(predictor: Any, images: list[Any], results: dict[str, Any], sync: Callable[[], None], *,
             repeats: int = 3) -> dict[str, Any]:
    """The U-Net's FLOPs per pass, the GFLOP/s it achieved (the network alone on one batch, and a whole patient's
    segmentation step end to end) and each as a share of the fp32 matmul peak measured in the same run.

    Milliseconds alone do not travel between machines; a share of this machine's own peak does: near 100% only
    fewer FLOPs (no flip, fewer slices, int8) can make it faster.
    """
    import numpy as np

    cfg = predictor.seg_config
    gflop = unet_gflop_per_pass(cfg)
    peak = matmul_peak_gflops()
    batch = prepare_images(np.stack(images[: predictor.batch_size]), cfg.image_size).numpy()
    network_ms = median_ms(lambda: predictor.engine.segment(batch), repeats, 1, sync)
    out: dict[str, Any] = {"unet_gflop_per_pass": round(gflop, 3), "fp32_matmul_peak_gflops": round(peak, 1),
                           "unet_network_batch": len(batch), "unet_network_batch_ms": round(network_ms, 1)}
    network = gflop * len(batch) / (network_ms / 1000)
    out["unet_network_gflops"] = round(network, 1)
    out["unet_network_share_of_peak"] = round(network / peak, 3)
    seg_key = next((k for k in results if k.startswith("whole_patient_") and k.endswith("_part_segment_ms")), None)
    pass_key = next((k for k in results if k.endswith("_unet_passes")), None)
    if seg_key and pass_key and results[seg_key] > 0:
        whole = gflop * results[pass_key] / (results[seg_key] / 1000)
        out["whole_patient_segment_gflops"] = round(whole, 1)
        out["whole_patient_segment_share_of_peak"] = round(whole / peak, 3)
    return out
