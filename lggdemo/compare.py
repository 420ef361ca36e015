"""Compare two studies of one patient: ``lggdemo-compare BASELINE FOLLOWUP --out DIR``
(also ``python -m lggdemo.compare``).

BASELINE and FOLLOWUP are each one study in any form the whole-patient mode reads (a Kaggle-layout folder or
``.zip``, NIfTI files, a DICOM folder or ``.zip``). The follow-up is registered onto the baseline (rigid, FLAIR),
both are segmented with the active weights (or ``--weights``), and DIR receives:

- ``comparison.json``: the registration (transform, similarity before/after, verdict), the change table, the
  RANO categories (imaging criterion only) and whether the change is beyond measurement error;
- ``change.csv``: the change table as a person reads it (one row per measure);
- ``followup_registered.nii.gz``: the follow-up's FLAIR on the baseline's grid (opens over the baseline);
- ``baseline_mask.nii.gz`` and ``followup_mask.nii.gz``: both masks on the baseline's grid;
- ``comparison.pdf``: the pair's page.

Dates come from DICOM StudyDate, else from a Kaggle folder's ``_YYYYMMDD`` ending, else ``--baseline-date`` /
``--followup-date`` (without dates there is no growth rate per year). A Kaggle-layout study records no voxel
size: give one with ``--spacing SLICE ROW COL`` (mm) to get mL and mm, else volumes are in voxels.

Exit status: 0 done; 2 a study could not be read or the pair was refused (two different patients?), said on
stderr; 1 the models cannot be loaded.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"dates are YYYY-MM-DD, got {text!r}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    import lggdemo  # noqa: F401  (torchvision guard before the models)

    ap = argparse.ArgumentParser(prog="lggdemo-compare", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("baseline", type=Path, metavar="BASELINE")
    ap.add_argument("followup", type=Path, metavar="FOLLOWUP")
    ap.add_argument("--out", type=Path, required=True, help="output folder (created; nothing is written elsewhere)")
    ap.add_argument("--baseline-date", type=_date, help="YYYY-MM-DD, when the study records none")
    ap.add_argument("--followup-date", type=_date, help="YYYY-MM-DD, when the study records none")
    ap.add_argument("--spacing", type=float, nargs=3, metavar=("SLICE", "ROW", "COL"),
                    help="voxel size in mm for studies that record none (the Kaggle layout)")
    ap.add_argument("--weights", type=Path, help="weights folder (default: the active weights)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--engine", default=None, help="onnx | torch (default: auto)")
    ap.add_argument("--no-pdf", action="store_true", help="skip the PDF page")
    args = ap.parse_args(argv)

    from lggdemo.device import DeviceError
    from lggdemo.inference.predictor import Predictor
    from lggdemo.longitudinal.change import ChangeError, ErrorModel
    from lggdemo.longitudinal.outputs import comparison_files
    from lggdemo.longitudinal.pipeline import compare
    from lggdemo.longitudinal.register import RegistrationError
    from lggdemo.models.engine import EngineError
    from lggdemo.models.weights import WeightsError, active_dir
    from lggdemo.patient.exporters import write_inside
    from lggdemo.patient.readers import open_path
    from lggdemo.patient.volume import VolumeError

    if args.spacing is not None and min(args.spacing) <= 0:
        ap.error("--spacing values must be positive millimetres")
    try:
        volumes = []
        for path in (args.baseline, args.followup):
            v = open_path(path).volume()
            if v.spacing is None and args.spacing is not None:
                v = replace(v, spacing=tuple(args.spacing))
            volumes.append(v)
    except VolumeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        predictor = Predictor.from_directory(args.weights or active_dir(), args.device, engine=args.engine)
        error_model = ErrorModel.load()
    except (WeightsError, DeviceError, EngineError, ChangeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        comparison = compare(predictor, volumes[0], volumes[1], dates=(args.baseline_date, args.followup_date),
                             error_model=error_model,
                             progress=lambda f, msg: print(f"[{f:4.0%}] {msg}", file=sys.stderr))
        files = comparison_files(comparison, pdf=not args.no_pdf)
    except (RegistrationError, ChangeError, VolumeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        write_inside(args.out, name, data)
    t = comparison.table
    print(f"registration: {comparison.registration.verdict_text}", file=sys.stderr)
    print(f"volume {t.volume_change_pct if t.volume_change_pct is None else round(t.volume_change_pct, 1)} %; "
          f"RANO-LGG {t.rano_lgg.category}; RANO 2.0 {t.rano2.category}; {t.volume_verdict.text}", file=sys.stderr)
    print(f"wrote {', '.join(sorted(files))} to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
