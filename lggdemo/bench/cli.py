"""Speed, measured rather than promised: ``python -m lggdemo.bench --infer``, ``--train`` and ``--teach``.

``--infer`` times what a Predict page visitor waits for -- one 256² slice's mask, its grade, each
Grad-CAM, and a 40-slice patient in batches -- as medians over repeats after warm-up, on the CPU and
on CUDA where present, on each engine asked for (``--engine torch,onnx`` times both in one run, side by side,
with the ONNX/PyTorch ratios). It uses the active weights when they are installed, else untrained models
built from the configs given on the command line (speed does not depend on the weights' values),
so the encoder and input sizes can be compared before anything is trained. ``--weights DIR`` that cannot be used
(missing, incomplete, corrupt) exits 2 and says why. Beside the milliseconds it prints the U-Net's FLOPs per pass,
the GFLOP/s it achieved and their share of this machine's fp32 matmul peak, measured in the same run.

``--train`` prints ``lggdemo.train.benchmark_training`` (training throughput) the same way; with
``--world-size N`` it also times N DistributedDataParallel processes on this machine and reports
their throughput ratio against one process (``lggdemo.train.benchmark_distributed``).

``--batch`` runs ``lggdemo-predict --manifest`` over the first ``--studies`` studies of ``--data`` (default:
the phantoms) with 1 process and with each count of ``--processes`` (torchrun ranks), and reports studies per minute
(``lggdemo.bench.batch``).

``--load N`` drives N browser-less Predict sessions at once (``lggdemo.bench.load``: N threads, each doing what
"Try an example" makes the server do, on one shared Predictor) and reports p50/p95 latency against the
single-user time, errors and peak memory. It uses the active weights (or ``--weights``) and the app's
dataset (or ``--data``).

All print a table and, with ``--json FILE``, write the numbers for the README or a CI log.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lggdemo  # noqa: F401  (torchvision guard before smp / grad-cam)
from lggdemo import train  # module attribute calls: tests substitute the trainer's benchmarks
from lggdemo._fs import atomic_write_bytes
from lggdemo.bench.batch import bench_batch
from lggdemo.bench.infer import bench_infer, compare_engines
from lggdemo.bench.load import run_load
from lggdemo.bench.teach import bench_teach
from lggdemo.device import DeviceError, available_devices
from lggdemo.models.engine import CHOICES as ENGINES
from lggdemo.models.engine import EngineError
from lggdemo.models.weights import WeightsError


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

    if requested == "all":
        return [d for d in ("cpu", "cuda") if d in available_devices()]
    return [requested]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lggdemo-bench", description=__doc__.split("\n\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--infer", action="store_true", help="inference latency: mask, grade, Grad-CAMs, 40-slice batch")
    what.add_argument("--train", action="store_true", help="training throughput (lggdemo.train.benchmark_training)")
    what.add_argument("--load", type=int, metavar="N",
                      help="N concurrent browser-less Predict sessions pressing 'Try an example' (latency, errors, memory)")
    parser.add_argument("--clicks", type=int, default=3, help="--load: timed example clicks per session (and alone)")

    what.add_argument("--teach", action="store_true", help="teaching layer: threshold redraw, uncertainty map")
    what.add_argument("--batch", action="store_true",
                      help="studies per minute of the batch CLI (lggdemo-predict --manifest), 1 and N processes")
    parser.add_argument("--studies", type=int, default=12, help="--batch: how many studies of --data to run")
    parser.add_argument("--processes", default="1,2", help="--batch: process counts to time, comma-separated")
    parser.add_argument("--format", default="nifti", help="--batch: the CLI's --format (e.g. nifti,pdf)")
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
    parser.add_argument("--engine", type=_engines, default=[None], metavar="E[,E]",
                        help="--infer, --teach, --load: auto, torch or onnx, or several side by side (torch,onnx); "
                             "default: $LGG_ENGINE, else auto")
    args = parser.parse_args(argv)

    report: dict[str, Any] = {}
    if args.batch:
        try:
            counts = [int(p) for p in args.processes.split(",") if p.strip()]
        except ValueError:
            parser.error(f"--processes takes counts like 1,2, got {args.processes!r}")
        device = "cpu" if args.device == "all" else args.device
        report["batch"] = bench_batch(args.data, args.studies, counts, weights_dir=args.weights, formats=args.format,
                                      device=device, engine=args.engine[0])
        print(format_table(_flatten(report["batch"]), f"batch CLI over {report['batch']['studies']} studies"))
        _write_json(args.json, report)
        return 0 if all("error" not in v for k, v in report["batch"].items() if k.startswith("processes_")) else 1
    if args.load is not None:
        if args.load < 1:
            parser.error("--load needs at least 1 session")
        device = "auto" if args.device == "all" else args.device
        errors = 0
        for engine in args.engine:
            name = "load" if len(args.engine) == 1 else f"load/{engine}"
            try:
                load = run_load(args.load, clicks=max(1, args.clicks), data=args.data, weights_dir=args.weights,
                                device=device, engine=engine)
            except (DeviceError, EngineError, WeightsError) as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            report[name] = load.as_dict()
            errors += len(load.errors)
            print(format_table(_flatten(report[name]), f"{args.load} concurrent Predict sessions ({name})"))
            print()
        if len(args.engine) > 1:
            print("note: peak RSS is this process's high-water mark: compare engines' memory in separate runs")
        _write_json(args.json, report)
        return 1 if errors else 0
    try:
        for device in _devices(args.device):
            runs: dict[str, dict[str, Any]] = {}
            for engine in args.engine if (args.infer or args.teach) else [None]:  # training has no engine
                if args.infer:
                    res = bench_infer(device, repeats=max(1, args.repeats), warmup=max(0, args.warmup),
                                      patient_slices=max(1, args.slices),
                                      weights_dir=args.weights, seg_encoder=args.seg_encoder, seg_size=args.seg_size,
                                      grade_size=args.grade_size, data=args.data, engine=engine)
                elif args.teach:
                    res = bench_teach(device, repeats=max(1, args.repeats), warmup=max(0, args.warmup),
                                      weights_dir=args.weights, data=args.data, engine=engine)
                else:
                    res = train.benchmark_training(device=device, image_size=args.image_size) if args.world_size <= 1 \
                        else train.benchmark_distributed(args.world_size, device=device, image_size=args.image_size)
                key = device if len(args.engine) == 1 or engine is None else f"{device}/{engine}"
                runs[str(res.get("engine", engine))] = res
                report[key] = res
                kind = "inference" if args.infer else "teaching" if args.teach else "training"
                print(format_table(_flatten(res), f"{kind} on {key}"))
                print()
            if "torch" in runs and "onnx" in runs:
                report[f"{device}/onnx_vs_torch"] = compare_engines(runs["torch"], runs["onnx"])
                print(format_table(report[f"{device}/onnx_vs_torch"], f"ONNX Runtime / PyTorch on {device}"))
                print()
    except (DeviceError, EngineError, WeightsError, ValueError) as exc:  # ValueError: TrainError (a rank without its GPU)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _write_json(args.json, report)
    return 0


def _engines(text: str) -> list[str | None]:
    """``--engine torch,onnx`` -> ["torch", "onnx"]; each name checked (argparse turns the error into a usage line)."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in ENGINES]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"engines are {', '.join(ENGINES)} (comma-separated), got {text!r}")
    return list(dict.fromkeys(names))


def _write_json(path: Path | None, report: dict[str, Any]) -> None:
    if path:

        atomic_write_bytes(path, (json.dumps(report, indent=2, default=str) + "\n").encode())
        print(f"wrote {path}")
