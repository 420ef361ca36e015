"""Speed, measured rather than promised: ``python -m lggdemo.bench --infer`` and ``--train``.

``--infer`` times what a Predict page visitor waits for -- one 256² slice's mask, its grade, each
Grad-CAM, and a 40-slice patient in batches -- as medians over repeats after warm-up, on the CPU and
on CUDA where present. It uses the active weights when they are installed, else untrained models
built from the configs given on the command line (speed does not depend on the weights' values),
so the encoder and input sizes can be compared before anything is trained.

``--train`` prints ``lggdemo.train.benchmark_training`` (training throughput) the same way; with
``--world-size N`` it also times N DistributedDataParallel processes on this machine and reports
their throughput ratio against one process (``lggdemo.train.benchmark_distributed``).
Both print a table and, with ``--json FILE``, write the numbers for the README or a CI log.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lggdemo  # noqa: F401  (torchvision guard before smp / grad-cam)

#: Targets for one slice on a laptop-class CPU (reported, never asserted).
TARGET_MASK_GRADE_MS = 150.0
TARGET_WITH_CAMS_MS = 500.0


def _median_ms(fn: Callable[[], object], repeats: int, warmup: int, sync: Callable[[], None]) -> float:
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
    from lggdemo.data import load_image, load_mask, scan_dataset
    from lggdemo.synthetic import default_root

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


def build_predictor(device: str, weights_dir: Path | None, seg_encoder: str | None, seg_size: int | None,
                    grade_size: int | None) -> tuple[Any, str]:
    """The active (or given) weights, or untrained models at the requested configs; says which."""
    import torch

    from lggdemo.device import choose_device
    from lggdemo.infer import Predictor
    from lggdemo.models import GradeConfig, SegConfig, build_grade, build_segmentation
    from lggdemo.weights import active_dir, is_complete

    dev = choose_device(device)
    overrides = any(v is not None for v in (seg_encoder, seg_size, grade_size))
    directory = weights_dir or active_dir()
    if not overrides and is_complete(directory):
        return Predictor.from_directory(directory, dev), f"weights {directory}"
    seg_cfg = SegConfig(**{k: v for k, v in (("encoder", seg_encoder), ("image_size", seg_size)) if v is not None})
    grade_cfg = GradeConfig(**({"image_size": grade_size} if grade_size is not None else {}))
    torch.manual_seed(0)
    predictor = Predictor(build_segmentation(seg_cfg), seg_cfg, build_grade(grade_cfg), grade_cfg, dev,
                          version="untrained-benchmark")
    return predictor, "untrained models (speed only)"


def bench_infer(device: str = "cpu", *, repeats: int = 10, warmup: int = 2, patient_slices: int = 40,
                weights_dir: Path | None = None, seg_encoder: str | None = None, seg_size: int | None = None,
                grade_size: int | None = None, data: Path | None = None) -> dict[str, Any]:
    """Median latencies in milliseconds for one device."""
    import numpy as np
    import torch

    from lggdemo.data import Clinical
    from lggdemo.explain import grade_cam, segmentation_cam

    predictor, source = build_predictor(device, weights_dir, seg_encoder, seg_size, grade_size)
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
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "models": source,
        "segmentation": f"{predictor.seg_config.encoder} U-Net @ {predictor.seg_config.image_size}px",
        "grade": f"ResNet50 @ {predictor.grade_config.image_size}px crops",
        "repeats": repeats,
    }
    for name, fn in timings.items():
        results[name] = round(_median_ms(fn, repeats, warmup, sync), 1)
    patient_repeats = max(1, repeats // 3)
    results[f"patient_{patient_slices}_slices_batch_ms"] = round(
        _median_ms(lambda: predictor.predict(images, clinical), patient_repeats, 1, sync), 1)
    results["batch_size"] = predictor.batch_size
    if dev.type == "cpu":
        for key, target in (("mask_and_grade_1_slice_ms", TARGET_MASK_GRADE_MS),
                            ("mask_grade_and_both_gradcams_1_slice_ms", TARGET_WITH_CAMS_MS)):
            over = results[key] - target
            ratio = results[key] / target
            results[f"{key}_vs_target"] = (f"meets {target:.0f} ms" if over <= 0
                                           else f"misses {target:.0f} ms by {over:.0f} ms ({ratio:.1f}×)")
    return results


def format_table(rows: dict[str, Any], title: str) -> str:
    width = max((len(k) for k in rows), default=10)
    lines = [title, "-" * len(title)]
    lines += [f"{k:<{width}}  {v}" for k, v in rows.items()]
    return "\n".join(lines)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _devices(requested: str) -> list[str]:
    from lggdemo.device import available_devices

    if requested == "all":
        return [d for d in ("cpu", "cuda") if d in available_devices()]
    return [requested]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lggdemo.bench", description=__doc__.split("\n\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--infer", action="store_true", help="inference latency: mask, grade, Grad-CAMs, 40-slice batch")
    what.add_argument("--train", action="store_true", help="training throughput (lggdemo.train.benchmark_training)")
    parser.add_argument("--device", default="all", help="cpu, cuda, mps, auto or all (CPU and CUDA where present)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--repeats", type=int, default=10, help="timed repeats per measurement (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before each measurement")
    parser.add_argument("--slices", type=int, default=40, help="slices in the batched patient measurement")
    parser.add_argument("--data", type=Path, help="kaggle_3m folder to take slices from (default: built-in phantoms)")
    parser.add_argument("--weights", type=Path, help="weights folder (default: the active weights, if installed)")
    parser.add_argument("--seg-encoder", help="untrained U-Net encoder to time instead of the weights (e.g. resnet18)")
    parser.add_argument("--seg-size", type=int, help="U-Net input side for untrained models")
    parser.add_argument("--grade-size", type=int, help="grade crop side for untrained models")
    parser.add_argument("--image-size", type=int, help="--train: image side (default: the full preset's)")
    parser.add_argument("--world-size", type=int, default=1,
                        help="--train: also time this many DDP processes on this machine and report the ratio to one")
    args = parser.parse_args(argv)

    from lggdemo.device import DeviceError

    report: dict[str, Any] = {}
    try:
        for device in _devices(args.device):
            if args.infer:
                res = bench_infer(device, repeats=max(1, args.repeats), warmup=max(0, args.warmup),
                                  patient_slices=max(1, args.slices),
                                  weights_dir=args.weights, seg_encoder=args.seg_encoder, seg_size=args.seg_size,
                                  grade_size=args.grade_size, data=args.data)
            else:
                from lggdemo.train import benchmark_distributed, benchmark_training  # the trainer owns a training step

                res = benchmark_training(device=device, image_size=args.image_size) if args.world_size <= 1 else \
                    benchmark_distributed(args.world_size, device=device, image_size=args.image_size)
            report[device] = res
            print(format_table(_flatten(res), f"{'inference' if args.infer else 'training'} on {device}"))
            print()
    except (DeviceError, ValueError) as exc:  # ValueError: TrainError (a rank without its GPU, a world size of 1)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        from lggdemo.data import atomic_write_bytes

        atomic_write_bytes(args.json, (json.dumps(report, indent=2, default=str) + "\n").encode())
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
