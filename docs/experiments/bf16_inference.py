"""bfloat16 inference against the exact engine, on every patient: the measurement behind selection-rule.txt (issue 20).

    OMP_NUM_THREADS=1 python docs/experiments/bf16_inference.py --data /tmp/lgg/kaggle_3m \\
        --out docs/experiments/bf16-inference.json

Engines, all on the bundled weights and one thread each, run patient by patient in turn (so a machine shared with
other work slows them alike): ``exact`` (ONNX Runtime float32, the app's engine on a CPU), ``torch_fp32`` (PyTorch
float32: the reference, and the time the trainer's validation took before issue 20), ``B1_torch_bf16_cl`` (PyTorch
autocast bfloat16 + channels-last) and ``B2_openvino_bf16`` (OpenVINO's CPU plugin on the same ONNX graphs with
INFERENCE_PRECISION_HINT=bf16; skipped when openvino is not installed -- it is not a project dependency).
Masks are made exactly as the evaluator makes them (``predict_patient_masks``), the grade as the app makes it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import lggdemo  # noqa: F401  (torchvision guard)
from lggdemo.data.kaggle import Clinical, scan_dataset
from lggdemo.metrics.segmentation import dice
from lggdemo.models.engine import TorchEngine, load_engine
from lggdemo.models.engine.export import cached_export
from lggdemo.models.forward import grade_slice_logits, predict_patient_masks
from lggdemo.models.networks import grade_config_from_dict, patient_logit, seg_config_from_dict
from lggdemo.models.weights import BUNDLED_DIR, GRADE_FILE, SEG_FILE, load_grade, load_segmentation, read_config
from lggdemo.patient.readers.kaggle import index_volume

CPU = torch.device("cpu")


class TorchBf16:
    """PyTorch under ``torch.autocast("cpu", dtype=torch.bfloat16)`` with channels-last inputs and weights."""

    name = "torch-bf16"

    def __init__(self, directory: Path) -> None:
        self.seg = load_segmentation(directory)[0].to(memory_format=torch.channels_last)
        self.grade_net = load_grade(directory)[0].to(memory_format=torch.channels_last)

    @torch.no_grad()
    def segment(self, x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.seg(t).float().numpy()

    @torch.no_grad()
    def grade(self, crops: np.ndarray, clinical: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(crops).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.grade_net(t, torch.from_numpy(clinical))[:, 0].float().numpy()


class OpenVinoBf16:
    """OpenVINO's CPU plugin on the cached ONNX graphs, bfloat16 inference precision, one thread."""

    name = "openvino-bf16"

    def __init__(self, directory: Path) -> None:
        import openvino as ov

        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY"}

        def compiled(kind: str, file: str, loader: Any) -> Any:
            def build() -> tuple[torch.nn.Module, int]:
                module, cfg = loader(directory)
                return module, cfg.image_size
            return core.compile_model(core.read_model(str(cached_export(kind, directory / file, build).path)), "CPU",
                                      config)

        self.seg = compiled("segmentation", SEG_FILE, load_segmentation)
        self.grade_net = compiled("grade", GRADE_FILE, load_grade)
        self.version = ov.__version__

    def segment(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.seg({"image": np.ascontiguousarray(x)})[0], np.float32)

    def grade(self, crops: np.ndarray, clinical: np.ndarray) -> np.ndarray:
        names = {p.get_any_name() for p in self.grade_net.inputs}
        feed = {k: v for k, v in (("image", crops), ("clinical", clinical)) if k in names}
        return np.asarray(self.grade_net(feed)[0], np.float32)[:, 0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--patients", type=int, default=0, help="only the first N patients (0: all)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    seg_cfg = seg_config_from_dict(read_config(BUNDLED_DIR / SEG_FILE))
    grade_cfg = grade_config_from_dict(read_config(BUNDLED_DIR / GRADE_FILE))
    engines: dict[str, Any] = {"exact": load_engine(BUNDLED_DIR, CPU, "onnx"),
                               "torch_fp32": load_engine(BUNDLED_DIR, CPU, "torch"),
                               "B1_torch_bf16_cl": TorchBf16(BUNDLED_DIR)}
    assert not isinstance(engines["exact"], TorchEngine), engines["exact"].note
    versions = {"torch": torch.__version__}
    try:
        engines["B2_openvino_bf16"] = OpenVinoBf16(BUNDLED_DIR)
        versions["openvino"] = engines["B2_openvino_bf16"].version
    except ImportError:
        print("openvino is not installed: B2 skipped")
    import onnxruntime

    versions["onnxruntime"] = onnxruntime.__version__
    index = scan_dataset(args.data)
    pids = index.patient_ids[: args.patients or None]
    partial = args.out.with_suffix(".partial.json")  # per-patient rows so far: a killed run resumes where it stopped
    per: dict[str, dict[str, Any]] = json.loads(partial.read_text()) if partial.is_file() else {}
    load_start = os.getloadavg()
    for n, pid in enumerate(pids, 1):
        if pid in per:
            continue
        vol = index_volume(index, pid)
        c = index.clinical_for(pid)
        clinical = Clinical(c.age, c.sex)
        row: dict[str, Any] = {"slices": int(vol.n_slices), "truth_voxels": int(vol.truth.sum())}
        masks: dict[str, np.ndarray] = {}
        for name, engine in engines.items():
            t = time.perf_counter()
            m = predict_patient_masks(engine, seg_cfg, vol.slices, [pid] * vol.n_slices, batch_size=16)
            areas = m.reshape(len(m), -1).sum(1)
            sel = np.flatnonzero(areas) if areas.any() else np.arange(len(m))  # as wholepatient grades
            logits = grade_slice_logits(engine, grade_cfg, vol.slices[sel], m[sel], clinical, batch_size=16)
            p = float(1 / (1 + np.exp(-patient_logit(logits, areas[sel]))))
            masks[name] = m
            row[name] = {"dice_vs_truth": dice(m, vol.truth), "voxels": int(m.sum()), "p_g3": p,
                         "seconds": time.perf_counter() - t}
        for name in engines:
            row[name]["dice_vs_exact"] = dice(masks[name], masks["exact"])
            row[name]["p_g3_diff_vs_exact"] = abs(row[name]["p_g3"] - row["exact"]["p_g3"])
        per[pid] = row
        partial.write_text(json.dumps(per))
        print(f"{n}/{len(pids)} {pid}: " + ", ".join(f"{k} {row[k]['dice_vs_exact']:.4f}" for k in engines),
              flush=True)
    summary: dict[str, Any] = {}
    seconds = {name: sum(r[name]["seconds"] for r in per.values()) for name in engines}
    exact_mean = float(np.mean([r["exact"]["dice_vs_truth"] for r in per.values()]))
    for name in engines:
        vs_exact = [r[name]["dice_vs_exact"] for r in per.values()]
        mean = float(np.mean([r[name]["dice_vs_truth"] for r in per.values()]))
        summary[name] = {
            "min_dice_vs_exact": float(min(vs_exact)),
            "patients_below_0.999": [p for p, r in per.items() if r[name]["dice_vs_exact"] < 0.999],
            "mean_dice_vs_truth": mean, "mean_dice_vs_truth_change": mean - exact_mean,
            "max_p_g3_diff": float(max(r[name]["p_g3_diff_vs_exact"] for r in per.values())),
            "seconds_all_patients_1_thread": round(seconds[name], 1),
        }
        if name.startswith("B"):
            s = summary[name]
            s["adopted"] = bool(s["min_dice_vs_exact"] >= 0.999 and abs(s["mean_dice_vs_truth_change"]) < 0.002
                                and seconds[name] < seconds["exact"])
    doc = {"rule": "docs/experiments/selection-rule.txt, issue 20 (written before this ran)",
           "data": str(index.root), "patients": len(per), "threads": 1, "cpu": platform.processor() or platform.machine(),
           "load_average_start_of_last_session": load_start, "load_average_end": os.getloadavg(),
           "note": "the CPU was shared with a training run and other sessions' tests: seconds are indicative only",
           "versions": versions, "summary": summary, "per_patient": per}
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    partial.unlink()
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
