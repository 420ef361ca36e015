"""int8 U-Net inference against the exact engine, on one fold's held-out patients: the measurement behind
docs/experiments/int8-rule.md (issue 27), written before anything here was run on real weights.

    OMP_NUM_THREADS=1 nice -n 10 python docs/experiments/int8_oof.py --weights /work/folds/C1-f0-refine \\
        --data /tmp/lgg/kaggle_3m --out docs/experiments/int8-oof.json

The exact engine is ONNX Runtime float32 on the graph the project's engine exports and caches; the int8 candidate
is that graph statically quantised by ONNX Runtime (QDQ, per-channel weights, U8S8, MinMax), calibrated on slices of
the fold model's TRAINING patients only, as the engine sees them. Both are scored on the fold's held-out patients
through the one whole-patient path (``predict_patient_masks``), only the engine swapped. Protocol code: it lives
here, not in the package. ``--train`` / ``--val`` replace the card's split (the phantom sanity run only).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import lggdemo  # noqa: F401  (torchvision guard)
from lggdemo._fs import atomic_write_bytes
from lggdemo.data.kaggle import DatasetIndex, scan_dataset
from lggdemo.metrics.segmentation import dice
from lggdemo.models.engine.export import cached_export
from lggdemo.models.engine.onnx_engine import OnnxEngine, open_session
from lggdemo.models.forward import predict_patient_masks, segment_logits
from lggdemo.models.preprocess import slices_with_head
from lggdemo.models.weights import SEG_FILE, load_segmentation, read_card
from lggdemo.patient.readers.kaggle import index_volume

#: The rule (int8-rule.md), fixed before measuring.
MIN_DICE_VS_FP32 = 0.99
MAX_COHORT_CHANGE = 0.003
MIN_SPEEDUP = 1.3
CALIB_PATIENTS, CALIB_SLICES, CALIB_TUMOUR_SLICES, CALIB_BATCH = 16, 8, 4, 16
SEED = 0
REPEATS, NET_REPEATS, NET_BATCH, BATCH = 5, 10, 32, 32


class Recorder:
    """An engine that runs the fp32 session and keeps each input it was given: the calibration images, exactly
    as the whole-patient path feeds the network (prepared, normalised, with the mirror images of the flip)."""

    name = "onnx"

    def __init__(self, inner: OnnxEngine) -> None:
        self.inner, self.inputs = inner, []  # type: ignore[var-annotated]
        self.device, self.note = inner.device, None

    def segment(self, x: np.ndarray) -> np.ndarray:
        self.inputs.append(np.array(x, np.float32, copy=True))
        return self.inner.segment(x)


def calibration_slices(index: DatasetIndex, train: list[str]) -> tuple[list[str], np.ndarray]:
    """The rule's calibration set: 16 seeded training patients x 8 slices (up to 4 with tumour, the rest other
    slices with head) -> (patients chosen, (128, 256, 256, 3) uint8)."""
    rng = np.random.default_rng(SEED)
    chosen = [str(p) for p in rng.choice(sorted(train), size=min(CALIB_PATIENTS, len(train)), replace=False)]
    picked = []
    for pid in chosen:
        vol = index_volume(index, pid)
        tumour = np.flatnonzero(vol.truth.reshape(len(vol.truth), -1).any(1))
        other = np.setdiff1d(np.flatnonzero(slices_with_head(vol.slices)), tumour)
        a = rng.choice(tumour, size=min(CALIB_TUMOUR_SLICES, len(tumour)), replace=False)
        b = rng.choice(other, size=min(CALIB_SLICES - len(a), len(other)), replace=False)
        picked.append(vol.slices[np.sort(np.concatenate([a, b]).astype(int))])
    return chosen, np.concatenate(picked)


def quantise(fp32_path: Path, batches: list[np.ndarray], workdir: Path) -> tuple[bytes, dict[str, Any]]:
    """The rule's int8 candidate built from the engine's fp32 export -> (its bytes, how it was built)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.it, None)
            return None if x is None else {"image": x}

    info: dict[str, Any] = {"calibration_images": int(sum(len(b) for b in batches)),
                            "calibration_batches": len(batches)}
    pre = workdir / "pre.onnx"
    try:
        quant_pre_process(str(fp32_path), str(pre))
        source, info["pre_process"] = pre, "quant_pre_process: done"
    except Exception as exc:  # noqa: BLE001 -- the rule: quantise the raw export and say so
        source, info["pre_process"] = fp32_path, f"quant_pre_process failed ({type(exc).__name__}: {exc}); raw export"
    out = workdir / "int8.onnx"
    started = time.perf_counter()
    quantize_static(str(source), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, reduce_range=False)
    info["quantise_seconds"] = round(time.perf_counter() - started, 1)
    data = out.read_bytes()
    ops = collections.Counter(n.op_type for n in onnx.load_model_from_string(data).graph.node)
    info.update(fp32_bytes=fp32_path.stat().st_size, int8_bytes=len(data), int8_graph_ops=dict(ops.most_common()))
    return data, info


def cpu_info() -> dict[str, Any]:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"model_name": platform.processor()}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    flags = set(fields.get("Flags", "").split())
    return {"model_name": fields.get("Model name", "").strip(), "cores": fields.get("CPU(s)", "").strip(),
            **{f: f in flags for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_int8")}}


def timed(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def interleaved(runs: dict[str, Any], repeats: int) -> dict[str, list[float]]:
    """Each callable once untimed, then ``repeats`` rounds, the order reversed every other round."""
    for fn in runs.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    names = list(runs)
    for r in range(repeats):
        for k in (names if r % 2 == 0 else names[::-1]):
            times[k].append(timed(runs[k]))
    return times


def summary(times: dict[str, list[float]]) -> dict[str, Any]:
    out: dict[str, Any] = {k: {"min_s": min(v), "median_s": float(np.median(v)), "all_s": v} for k, v in times.items()}
    out["ratio_of_medians"] = out["fp32"]["median_s"] / out["int8"]["median_s"]
    out["ratio_of_minimums"] = out["fp32"]["min_s"] / out["int8"]["min_s"]
    return out


def main() -> int:  # noqa: PLR0915 -- one protocol, in its order
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--budget-min", type=float, default=40.0, help="stop starting patients past this (whole run)")
    ap.add_argument("--train", default="", help="comma list replacing the card's split.train (phantom run)")
    ap.add_argument("--val", default="", help="comma list replacing the card's split.val (phantom run)")
    args = ap.parse_args()
    start = time.monotonic()
    torch.set_num_threads(1)
    threads = 1
    card = read_card(args.weights)
    split = card.get("split") or {}
    train = args.train.split(",") if args.train else list(split["train"])
    val = args.val.split(",") if args.val else list(split["val"])
    assert not set(train) & set(val), "held-out patients among the training patients"
    _, cfg = load_segmentation(args.weights)
    index = scan_dataset(args.data)
    missing = [p for p in train + val if p not in index.patients]
    assert not missing, f"patients not in {args.data}: {missing[:5]}"
    loads = [os.getloadavg()]

    def build() -> tuple[torch.nn.Module, int]:
        module, c = load_segmentation(args.weights)
        return module, c.image_size

    fp32_path = cached_export("segmentation", args.weights / SEG_FILE, build).path
    fp32 = OnnxEngine(open_session(fp32_path, threads), threads=threads)

    # 1. calibration: training patients only, fed as the engine sees them
    calib_patients, calib = calibration_slices(index, train)
    recorder = Recorder(fp32)
    for i in range(0, len(calib), CALIB_BATCH):
        segment_logits(recorder, cfg, calib[i : i + CALIB_BATCH])
    with tempfile.TemporaryDirectory(prefix="int8-") as tmp:
        int8_bytes, quant = quantise(fp32_path, recorder.inputs, Path(tmp))
    int8 = OnnxEngine(open_session(int8_bytes, threads), threads=threads)
    engines = {"fp32": fp32, "int8": int8}
    print(f"calibrated on {len(calib)} slices of {len(calib_patients)} training patients; {quant['pre_process']}; "
          f"{quant['fp32_bytes'] / 1e6:.1f} MB -> {quant['int8_bytes'] / 1e6:.1f} MB", flush=True)
    loads.append(os.getloadavg())

    # 2. speed, interleaved in this process: the whole-patient path on the first held-out patient, the network alone
    first = index_volume(index, val[0])
    ids = [val[0]] * first.n_slices
    speed = summary(interleaved({k: (lambda e=e: predict_patient_masks(e, cfg, first.slices, ids, batch_size=BATCH))
                                 for k, e in engines.items()}, REPEATS))
    rng = np.random.default_rng(SEED)
    batch = recorder.inputs[0][:NET_BATCH] if len(recorder.inputs[0]) >= NET_BATCH else \
        rng.standard_normal((NET_BATCH, 3, cfg.image_size, cfg.image_size)).astype(np.float32)
    net = summary(interleaved({k: (lambda e=e: e.segment(batch)) for k, e in engines.items()}, NET_REPEATS))
    print(f"whole patient {val[0]} ({first.n_slices} slices): fp32 median {speed['fp32']['median_s']:.2f} s, "
          f"int8 {speed['int8']['median_s']:.2f} s, x{speed['ratio_of_medians']:.2f}; network alone "
          f"x{net['ratio_of_medians']:.2f}", flush=True)
    loads.append(os.getloadavg())

    # 3. scoring: held-out patients in the card's order, each once per engine, order alternating
    per: dict[str, dict[str, Any]] = {}
    partial = args.out.with_suffix(".partial.json")
    budget, scoring_start = args.budget_min * 60, time.monotonic()
    for n, pid in enumerate(val):
        now = time.monotonic()
        if per and (now - start) + (now - scoring_start) / len(per) > budget:  # the next patient would overrun
            print(f"time budget: stopping after {len(per)} of {len(val)} held-out patients", flush=True)
            break
        vol = first if pid == val[0] else index_volume(index, pid)
        row: dict[str, Any] = {"slices": int(vol.n_slices), "truth_voxels": int(vol.truth.sum())}
        masks = {}
        for k in (("fp32", "int8") if n % 2 == 0 else ("int8", "fp32")):
            t = time.perf_counter()
            masks[k] = predict_patient_masks(engines[k], cfg, vol.slices, [pid] * vol.n_slices, batch_size=BATCH)
            row[k] = {"seconds": time.perf_counter() - t, "dice_vs_truth": dice(masks[k], vol.truth),
                      "voxels": int(masks[k].sum())}
        row["dice_int8_vs_fp32"] = dice(masks["int8"], masks["fp32"])
        per[pid] = row
        loads.append(os.getloadavg())
        atomic_write_bytes(partial, json.dumps(per).encode())
        print(f"{n + 1}/{len(val)} {pid}: int8 vs fp32 {row['dice_int8_vs_fp32']:.4f}; truth fp32 "
              f"{row['fp32']['dice_vs_truth']:.4f} int8 {row['int8']['dice_vs_truth']:.4f}", flush=True)

    vs_fp32 = {p: r["dice_int8_vs_fp32"] for p, r in per.items()}
    cohort = {k: float(np.mean([r[k]["dice_vs_truth"] for r in per.values()])) for k in engines}
    change = cohort["int8"] - cohort["fp32"]
    pass_seconds = {k: sum(r[k]["seconds"] for r in per.values()) for k in engines}
    checks = {"a_min_dice_vs_fp32": min(vs_fp32.values()) >= MIN_DICE_VS_FP32,
              "b_cohort_change": abs(change) < MAX_COHORT_CHANGE,
              "c_speedup": speed["ratio_of_medians"] >= MIN_SPEEDUP}
    import onnxruntime

    one_min = [la[0] for la in loads]
    doc = {
        "rule": "docs/experiments/int8-rule.md (committed before this ran)",
        "weights": str(args.weights), "version": card.get("version"), "data": str(index.root),
        "calibration": {"patients": calib_patients, "slices": int(len(calib)), **quant},
        "held_out_total": len(val), "held_out_scored": len(per),
        "scored_all": len(per) == len(val),
        "threads": threads, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cpu": cpu_info(), "versions": {"onnxruntime": onnxruntime.__version__, "torch": torch.__version__},
        "load_average_1min": {"min": min(one_min), "mean": float(np.mean(one_min)), "max": max(one_min),
                              "samples": len(one_min)},
        "note": "the 2-core CPU was shared with a priority training run: absolute seconds are under load; the ratios "
                "are from one process, the engines interleaved",
        "results": {
            "dice_int8_vs_fp32_min": min(vs_fp32.values()),
            "patients_below_0.99": [p for p, d in vs_fp32.items() if d < MIN_DICE_VS_FP32],
            "cohort_per_volume_dice": cohort, "cohort_change": change,
            "speed_whole_patient": {"patient": val[0], "slices": int(first.n_slices), **speed},
            "speed_network_alone": {"batch": NET_BATCH, **net},
            "scoring_pass_seconds": pass_seconds,
            "scoring_pass_ratio": pass_seconds["fp32"] / pass_seconds["int8"],
        },
        "checks": checks, "adopted": all(checks.values()),
        "run_seconds": round(time.monotonic() - start, 1),
        "per_patient": per,
    }
    atomic_write_bytes(args.out, (json.dumps(doc, indent=1) + "\n").encode())
    partial.unlink(missing_ok=True)
    print(json.dumps({k: doc[k] for k in ("held_out_scored", "checks", "adopted")} | {"results": {
        k: v for k, v in doc["results"].items() if not k.startswith("speed")}}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
