"""Batch inference over whole patients: ``lggdemo-predict INPUT... --out DIR``.

Each INPUT is one patient: a Kaggle-layout folder or ``.zip`` (``<ID>_<n>.tif`` slices, masks optional),
a NIfTI file (3-channel 4D, or one sequence taken as FLAIR), a folder or ``.zip`` of NIfTI files (one per
sequence, assigned by name: ``flair``, ``t1ce``/``post``, ``t1``/``pre``, ``mask``), or a folder or ``.zip``
of one DICOM study. One mask per input, named after it, in ``--format`` (nifti, dicom-seg for DICOM input,
png); a report row per input (``--json``, ``--csv``). It runs the Predict page's code path
(``readers`` -> ``wholepatient.predict_volume`` -> ``exporters``).

Exit status: 0 when every input was predicted; 2 when any input was refused or its mask could not be made
(each one named on stderr, never a traceback), after the good inputs have been written; 1 when the models
cannot be loaded.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from lggdemo.data.kaggle import Clinical
from lggdemo.device import DeviceError
from lggdemo.inference.predictor import Predictor
from lggdemo.inference.reports import patient_report_csv, patient_report_json, patient_row
from lggdemo.inference.wholepatient import predict_volume
from lggdemo.models.engine import CHOICES as ENGINES
from lggdemo.models.engine import EngineError
from lggdemo.models.preprocess import ClinicalInputError, validate_clinical
from lggdemo.models.weights import WeightsError, active_dir
from lggdemo.patient.exporters import FORMATS, ExportError, mask_bytes, write_inside
from lggdemo.patient.readers import open_path
from lggdemo.patient.volume import VolumeError


def main(argv: Sequence[str] | None = None) -> int:
    import lggdemo  # noqa: F401  (torchvision guard before the models)

    ap = argparse.ArgumentParser(prog="lggdemo-predict", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="one patient each (see above)")
    ap.add_argument("--out", type=Path, required=True, help="output folder (created; nothing is written elsewhere)")
    ap.add_argument("--format", choices=FORMATS, default="nifti", help="mask format (default: nifti)")
    ap.add_argument("--json", type=Path, help="report file (default: DIR/report.json)")
    ap.add_argument("--csv", type=Path, help="also a CSV report (one row per input)")
    ap.add_argument("--age", type=float, default=None, help="age at diagnosis for the grade (same for every input)")
    ap.add_argument("--sex", choices=["female", "male"], default=None, help="sex for the grade (same for every input)")
    ap.add_argument("--no-grade", action="store_true", help="masks and volumes only")
    ap.add_argument("--weights", type=Path, help="weights folder (default: the active weights)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--engine", choices=ENGINES, default=None,
                    help="what runs the networks (default: $LGG_ENGINE, else auto: ONNX Runtime on a CPU, PyTorch on a GPU)")
    args = ap.parse_args(argv)

    from tqdm import tqdm


    clinical = None if args.no_grade else Clinical(args.age, args.sex)
    try:
        if clinical is not None:

            validate_clinical(clinical)
        predictor = Predictor.from_directory(args.weights or active_dir(), args.device, engine=args.engine)
    except (WeightsError, DeviceError, ClinicalInputError, EngineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if predictor.engine_note:
        print(f"note: {predictor.engine_note}", file=sys.stderr)
    if clinical is not None and not predictor.grade_verdict.informative:
        print(f"note: {predictor.grade_verdict.sentence} The report's p_g3 is null; raw_score is the model's "
              "uncalibrated output.", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    rows, notes, bad = [], {}, []
    for path in tqdm(args.inputs, desc="patients", unit="patient", file=sys.stderr):
        try:
            volume = open_path(path).volume()
            prediction = predict_volume(predictor, volume, clinical)
            file_name, data = mask_bytes(args.format, volume, prediction)
            written = write_inside(args.out, file_name, data)
        except (VolumeError, ExportError) as exc:
            bad.append(f"{path}: {exc}")
            rows.append(patient_row(None, None, name=str(path), error=str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 -- one input's surprise must not lose the others: named, exit 2
            message = f"unexpected {type(exc).__name__} ({exc}); please report it with this input"
            bad.append(f"{path}: {message}")
            rows.append(patient_row(None, None, name=str(path), error=message))
            continue
        row = patient_row(volume, prediction)
        row["input"], row["mask_file"] = str(path), written.name
        rows.append(row)
        notes[str(path)] = list(volume.provenance.notes)
    json_path = args.json or args.out / "report.json"
    write_inside(json_path.parent, json_path.name, patient_report_json(rows, notes))
    if args.csv:
        write_inside(args.csv.parent, args.csv.name, patient_report_csv(rows))
    print(f"{len(rows) - len(bad)} of {len(rows)} input(s) predicted; masks in {args.out}; report {json_path}",
          file=sys.stderr)
    for message in bad:
        print(f"error: {message}", file=sys.stderr)
    return 2 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
