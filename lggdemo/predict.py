"""Batch inference over whole patients: ``lggdemo-predict INPUT... --out DIR``, or over a folder tree or
a manifest of thousands of studies (``--tree ROOT`` / ``--manifest FILE.csv``).

Each INPUT is one patient: a Kaggle-layout folder or ``.zip`` (``<ID>_<n>.tif`` slices, masks optional),
a NIfTI file (3-channel 4D, or one sequence taken as FLAIR), a folder or ``.zip`` of NIfTI files (one per
sequence, assigned by name: ``flair``, ``t1ce``/``post``, ``t1``/``pre``, ``mask``), or a folder or ``.zip``
of one DICOM study. Outputs per input, named after it, in each ``--format`` (comma-separated): a mask (nifti,
dicom-seg for DICOM input, png), the tumour probability (prob-nifti: float32 0-1 on FLAIR's grid), the one-page
PDF report (pdf); a report row per input (``--json``, ``--csv``) with the clinical measurements. It runs the Predict
page's code path (``readers`` -> ``wholepatient.predict_volume`` -> ``reports`` -> ``exporters`` / ``report``).

The Kaggle layout records no voxel size: give ``--pixel-size MM --slice-spacing MM`` (the page's two voxel-size
fields: the slices' in-plane pixel size and the distance between slices) to have volumes in mL, diameters in mm and
a NIfTI mask whose affine carries that spacing; without them its volumes are in voxels. An input that records its
own voxel size (NIfTI, DICOM) keeps it: the given size is not applied to it, and a note on stderr and in the
report says so (a typed value never overrides the file's header).

With ``--tree`` or ``--manifest`` (a CSV with a ``path`` column; optional ``id``, ``age``, ``sex``), each study's
outputs go to ``DIR/studies/<key>/`` with a completion marker written last, and ``DIR/summary.csv`` holds one row per
study. A rerun skips complete studies; ``--shard r/n`` or torchrun (``torchrun --nproc-per-node N -m
lggdemo.predict ...``) shares the studies between ranks (see ``lggdemo.inference.batch``).

Exit status: 0 when every input was predicted; 2 when any input was refused or its mask could not be made
(each one named on stderr, never a traceback), after the good inputs have been written; 1 when the models
cannot be loaded or the batch cannot be set up.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from lggdemo.data.kaggle import Clinical
from lggdemo.device import DeviceError
from lggdemo.inference.batch import BatchError, discover, parse_shard, read_manifest, write_summary
from lggdemo.inference.predictor import Predictor
from lggdemo.inference.reports import patient_report_csv, patient_report_json
from lggdemo.inference.runner import PDF_FORMAT, VoxelSize, process_study, report_batch, run_batch, torch_barrier
from lggdemo.models.engine import CHOICES as ENGINES
from lggdemo.models.engine import EngineError
from lggdemo.models.preprocess import ClinicalInputError, validate_clinical
from lggdemo.models.weights import WeightsError, active_dir
from lggdemo.patient.exporters import FORMATS, write_inside
from lggdemo.patient.volume import VolumeError

OUTPUT_FORMATS = (*FORMATS, PDF_FORMAT)


def _formats(text: str) -> list[str]:
    """``--format nifti,pdf`` -> ["nifti", "pdf"]; each name checked (argparse turns the error into a usage line)."""
    names = list(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    bad = [n for n in names if n not in OUTPUT_FORMATS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"formats are {', '.join(OUTPUT_FORMATS)} (comma-separated), got {text!r}")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    import lggdemo  # noqa: F401  (torchvision guard before the models)

    ap = argparse.ArgumentParser(prog="lggdemo-predict", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="*", type=Path, metavar="INPUT", help="one patient each (see above)")
    ap.add_argument("--tree", type=Path, help="a folder tree of studies (each found study is one input)")
    ap.add_argument("--manifest", type=Path, help="a CSV of studies: path[,id,age,sex]")
    ap.add_argument("--shard", help="r/n: take this share of --tree/--manifest (default: torchrun's RANK/WORLD_SIZE)")
    ap.add_argument("--retry-errors", action="store_true", help="--tree/--manifest: redo studies that failed before")
    ap.add_argument("--merge", action="store_true",
                    help="--tree/--manifest: only write DIR/summary.csv from the completed studies' markers")
    ap.add_argument("--out", type=Path, required=True, help="output folder (created; nothing is written elsewhere)")
    ap.add_argument("--format", type=_formats, default=["nifti"], metavar="F[,F]",
                    help=f"outputs per input, comma-separated: {', '.join(OUTPUT_FORMATS)} (default: nifti)")
    ap.add_argument("--json", type=Path, help="report file (default: DIR/report.json)")
    ap.add_argument("--csv", type=Path, help="also a CSV report (one row per input)")
    ap.add_argument("--age", type=float, default=None, help="age at diagnosis for the grade (same for every input)")
    ap.add_argument("--sex", choices=["female", "male"], default=None, help="sex for the grade (same for every input)")
    ap.add_argument("--no-grade", action="store_true", help="masks and volumes only")
    ap.add_argument("--pixel-size", type=float, metavar="MM",
                    help="in-plane pixel size in mm of inputs that record no voxel size (the Kaggle layout); with "
                         "--slice-spacing. Inputs that record their own (NIfTI, DICOM) keep it, with a note")
    ap.add_argument("--slice-spacing", type=float, metavar="MM",
                    help="distance between slices in mm, for the same inputs; with --pixel-size")
    ap.add_argument("--weights", type=Path, help="weights folder (default: the active weights)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--engine", choices=ENGINES, default=None,
                    help="what runs the networks (default: $LGG_ENGINE, else auto: ONNX Runtime on a CPU, PyTorch on a GPU)")
    args = ap.parse_args(argv)
    batch = args.tree is not None or args.manifest is not None
    if batch == bool(args.inputs) or (args.tree is not None and args.manifest is not None):
        ap.error("give INPUT paths, or one of --tree / --manifest")
    if batch and args.merge:
        return _merge(args)
    if (args.pixel_size is None) != (args.slice_spacing is None):
        ap.error("give both --pixel-size and --slice-spacing (mm), or neither")

    from tqdm import tqdm

    clinical = None if args.no_grade else Clinical(args.age, args.sex)
    try:
        if clinical is not None:
            validate_clinical(clinical)
        voxel_size = None if args.pixel_size is None else VoxelSize(args.pixel_size, args.slice_spacing)
        studies = (discover(args.tree) if args.tree is not None else read_manifest(args.manifest)) if batch else []
        rank, world = parse_shard(args.shard) if batch else (0, 1)
        predictor = Predictor.from_directory(args.weights or active_dir(), args.device, engine=args.engine)
    except (WeightsError, DeviceError, ClinicalInputError, EngineError, BatchError, VolumeError) as exc:
        hint = (" (an installed copy ships no weights: pass --weights DIR, e.g. a checkout's weights/ folder)"
                if isinstance(exc, WeightsError) and args.weights is None else "")
        print(f"error: {exc}{hint}", file=sys.stderr)
        return 1
    if predictor.engine_note:
        print(f"note: {predictor.engine_note}", file=sys.stderr)
    if clinical is not None and not predictor.grade_verdict.informative and rank == 0:
        print(f"note: {predictor.grade_verdict.sentence} The report's p_g3 is null; raw_score is the model's "
              "uncalibrated output.", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    if batch:
        sync = torch_barrier() if args.shard is None else None
        share = (len(studies) - rank + world - 1) // world
        bar = tqdm(total=share, desc=f"studies (rank {rank}/{world})", unit="study", file=sys.stderr)
        try:
            result = run_batch(predictor, studies, args.out, clinical=clinical, formats=args.format, rank=rank,
                               world=world, retry_errors=args.retry_errors, barrier=sync[0] if sync else None,
                               progress=lambda _s: bar.update(), voxel_size=voxel_size)
        finally:
            bar.close()
            if sync:
                sync[1]()
        report_batch(result, args.out, rank, world)
        for message in result.errors:
            print(f"error: {message}", file=sys.stderr)
        return 2 if result.errors else 0

    rows, notes, bad = [], {}, []
    for path in tqdm(args.inputs, desc="patients", unit="patient", file=sys.stderr):
        outcome = process_study(predictor, path, clinical, args.format, args.out, voxel_size)
        rows.append(outcome.row)
        if outcome.error:
            bad.append(f"{path}: {outcome.error}")
        if outcome.written or not outcome.error:
            notes[str(path)] = outcome.notes
    json_path = args.json or args.out / "report.json"
    write_inside(json_path.parent, json_path.name, patient_report_json(rows, notes, predictor.card))
    if args.csv:
        write_inside(args.csv.parent, args.csv.name, patient_report_csv(rows))
    print(f"{len(rows) - len(bad)} of {len(rows)} input(s) predicted; outputs in {args.out}; report {json_path}",
          file=sys.stderr)
    for message in bad:
        print(f"error: {message}", file=sys.stderr)
    return 2 if bad else 0


def _merge(args: argparse.Namespace) -> int:
    """``--merge``: the summary from the markers alone (no model is loaded); exit 2 while studies are missing."""
    try:
        studies = discover(args.tree) if args.tree is not None else read_manifest(args.manifest)
    except BatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    path, missing = write_summary(args.out, studies)
    if path is None:
        print(f"error: {len(missing)} of {len(studies)} studies are not complete (first: {missing[0].key}); run the "
              "batch again to finish them", file=sys.stderr)
        return 2
    print(f"summary {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
