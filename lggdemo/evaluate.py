"""The evaluation CLI: both models scored on any kaggle_3m dataset (metrics: ``lggdemo.metrics``).

``lggdemo-evaluate --data DIR [--weights DIR] [--split train|val] [--json FILE]`` scores weights on any
dataset in the kaggle_3m layout. The trainer's validation report calls the same functions, so the
numbers in a model card and the numbers a user recomputes on their own data mean the same thing.

Definitions (also written into every model card):
- masks: every patient-level score is of the masks the app's whole-patient mode shows
  (:func:`predict_patient_masks`: the 2D rule, then the largest 3D component per patient).
- per-volume Dice: one Dice over all voxels of a patient (prediction and truth stacked over slices),
  averaged over patients -- the measure of Buda et al. 2019. A patient with no tumour in either
  counts 1.
- tumour-slice Dice: per-slice 2D Dice averaged over slices whose ground truth shows tumour.
- grade AUC, accuracy, balanced accuracy: per patient, P(G3) from the area-weighted slice logits,
  threshold 0.5; 95% intervals by bootstrap over patients (2000 resamples, fixed seed).
- shown_p_g3 (``--json``, per patient, beside ``raw_score``): the P(G3) the app states for that patient under
  the card's rule (:class:`lggdemo.inference.grade.PatientGrade`): calibrated, or the base rate when withheld;
  with the Brier score and log loss of both over the graded patients.
- trained_on (``--json``): the scored patients the weights' card lists as training patients; a warning names
  how many, since their numbers flatter the model (the bundled weights trained on every patient of ../shared).
- measurements (``--json``, per patient and for the cohort): the predicted and true masks' volume, RANO-LGG
  product and measurability (``lggdemo.measure``), HD95, ASSD and surface Dice at 1 and 2 mm; median absolute %
  error, Bland-Altman bias and 95% limits of agreement, and the rate of agreement on "measurable". The kaggle_3m
  layout records no voxel size: ``--spacing SLICE,ROW,COL`` gives one, else volumes are in voxels, products in
  px², distances in voxel steps and measurability is not judged.

This module is the command line only: every number comes from :mod:`lggdemo.evaluation.scoring`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lggdemo._fs import atomic_write_bytes
from lggdemo.data.arrays import SliceArrays, slice_arrays
from lggdemo.data.kaggle import DatasetError, scan_dataset
from lggdemo.device import DeviceError, choose_device
from lggdemo.evaluation.scoring import score_dataset
from lggdemo.models.card import ModelCard
from lggdemo.models.engine import CHOICES as ENGINES
from lggdemo.models.engine import ENV_VAR, EngineError, choose_engine, load_engine
from lggdemo.models.networks import grade_config_from_dict, seg_config_from_dict
from lggdemo.models.weights import GRADE_FILE, SEG_FILE, WeightsError, active_dir, load_card, read_config


def parse_spacing(text: str | None) -> tuple[float, float, float] | None:
    """``"SLICE,ROW,COL"`` mm -> a spacing; raises ``argparse.ArgumentTypeError`` for anything else."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"--spacing wants three positive mm values SLICE,ROW,COL, got {text!r}")
    return values  # type: ignore[return-value]


def print_segmentation(seg: dict[str, Any]) -> None:
    print(f"masks: {seg['postprocess']} (as the app's whole-patient mode shows them)")
    print(f"{'patient':<28} {'per-volume Dice':>15}")
    for pid, d in seg["per_patient_dice"].items():
        print(f"{pid:<28} {d:>15.3f}")
    for name, m in seg["metrics"].items():
        print(f"{name}: {m['value']:.3f}{_ci(m['ci95'])}  n={m['n']}")
    for area, b in seg["tumour_slice_dice_by_area"].items():
        print(f"tumour-slice Dice, true tumour {area}: {b['dice']:.3f}  n={b['n']}")


def print_measurements(cohort: dict[str, Any]) -> None:
    """The cohort's measurement agreement, one line each."""
    units = cohort["units"]
    for name in ("volume", "product"):
        r = cohort[name]
        ba = r["bland_altman"]
        med = "n/a" if r["median_abs_pct_error"] is None else f"{r['median_abs_pct_error']:.1f}%"
        line = f"{name}: median |error| {med} (n={r['n_pct']})"
        if ba and ba["loa_low"] is not None:
            line += (f", Bland-Altman bias {ba['bias']:+.2f} {units[name]}, 95% limits "
                     f"{ba['loa_low']:+.2f} to {ba['loa_high']:+.2f}")
        print(line)
    if cohort["measurable"]:
        m = cohort["measurable"]
        print(f"measurable by RANO-LGG: model and truth agree on {m['agreement_rate']:.0%} of {m['n']} "
              f"(model only {m['model_only']}, truth only {m['truth_only']})")
    else:
        print("measurable by RANO-LGG: needs a voxel size (--spacing)")
    for key in ("hd95_mm", "assd_mm", "surface_dice_1mm", "surface_dice_2mm"):
        r = cohort["surface"][key]
        if r["n"]:
            name = key.replace("_mm", f" ({units['distance']})") if key.endswith("_mm") else key
            print(f"{name}: mean {r['mean']:.3f}, median {r['median']:.3f}  n={r['n']}")


def print_grade(grade: dict[str, Any]) -> None:
    for name, m in grade["metrics"].items():
        print(f"grade {name}: {m['value']:.3f}{_ci(m['ci95'])}  n={m['n']}")
    stated = grade["shown"]
    for key, label in (("shown_p_g3", "what the app states"), ("raw_score", "the raw score"),
                       ("base_rate", "the base rate")):
        if key in stated:
            print(f"grade, {label}: Brier {stated[key]['brier']:.4f}, log loss {stated[key]['log_loss']:.4f}  "
                  f"n={stated[key]['n']}")
    if not grade["metrics"]:
        print("grade: data.csv has no grades for these patients; not evaluated")


def _ci(ci: Sequence[float] | None) -> str:
    return f"  (95% CI {ci[0]:.3f}–{ci[1]:.3f})" if ci else ""


# --- CLI -------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    import lggdemo  # noqa: F401  (torchvision guard)

    ap = argparse.ArgumentParser(prog="lggdemo-evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a kaggle_3m folder (or its parent)")
    ap.add_argument("--weights", default=None, help="weights folder (default: the active weights)")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--patients", default=None, help="comma-separated patient folders to score (default: all)")
    which.add_argument("--split", choices=["train", "val"], default=None,
                       help="score the patients the weights' card lists on that side of its split")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--engine", choices=ENGINES, default=None,
                    help=f"what runs the networks (default: ${ENV_VAR}, else auto: ONNX Runtime on a CPU, PyTorch on a GPU)")
    ap.add_argument("--json", default=None, help="also write the results as JSON here")
    ap.add_argument("--spacing", type=parse_spacing, default=None, metavar="SLICE,ROW,COL",
                    help="voxel size in mm of the 256² slices, for the measurements in mm (the kaggle_3m layout "
                         "records none: without it volumes are in voxels, products in px², distances in voxels)")
    args = ap.parse_args(argv)
    try:
        device = choose_device(args.device)
        choice = choose_engine(args.engine, device)
        index = scan_dataset(args.data)
        wdir = Path(args.weights) if args.weights else active_dir()
        seg_cfg = seg_config_from_dict(read_config(wdir / SEG_FILE))
        seg = load_engine(wdir, device, choice, models=("segmentation",))
    except (DatasetError, DeviceError, WeightsError, EngineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if seg.note:
        print(f"note: {seg.note}", file=sys.stderr)
    for p in index.problems:
        print(f"warning: {p}", file=sys.stderr)
    chosen = args.patients.split(",") if args.patients else None
    if args.split:
        try:
            chosen = list(getattr(load_card(wdir).split, args.split))
        except WeightsError as exc:
            print(f"error: the card in {wdir} has no {args.split} split: {exc}", file=sys.stderr)
            return 2
        if not chosen:
            print(f"error: the card in {wdir} has no {args.split} split", file=sys.stderr)
            return 2
    arrays = slice_arrays(index, 256)
    keep = np.isin(arrays.patient_ids, chosen) if chosen is not None else np.ones(len(arrays.patient_ids), bool)
    arrays = SliceArrays(arrays.images[keep], arrays.masks[keep], arrays.patient_ids[keep], arrays.numbers[keep])
    patients = list(dict.fromkeys(arrays.patient_ids.tolist()))
    try:
        card: ModelCard | None = load_card(wdir)
    except WeightsError:
        card = None
    # Scores on a patient the weights trained on flatter them; the bundled weights trained on every patient of
    # ../shared, so say it wherever it happens, by name in the JSON.
    trained_on = sorted(set(patients) & set(card.split.train)) if card is not None else []
    if trained_on:
        print(f"warning: {len(trained_on)} of {len(patients)} patients trained these weights (their card's training "
              "patients): their numbers flatter the model; the card's cross-validation is its estimate",
              file=sys.stderr)
    try:
        grade_cfg = grade_config_from_dict(read_config(wdir / GRADE_FILE))
        grade = load_engine(wdir, device, choice, models=("grade",))
    except WeightsError as exc:
        print(f"grade model not evaluated: {exc}", file=sys.stderr)
        grade_cfg, grade = None, None
    scores = score_dataset(seg, seg_cfg, arrays, index, grade=grade, grade_cfg=grade_cfg, card=card,
                           spacing=args.spacing, device=device)
    result: dict[str, object] = {"weights": str(wdir), "data": str(index.root), "device": str(device),
                                 "engine": seg.description, "trained_on": trained_on, **scores}
    print_segmentation(scores["segmentation"])
    print_measurements(scores["measurements"]["cohort"])
    if "grade" in scores:
        print_grade(scores["grade"])
    if card is not None:
        result["card_version"] = card.version
    if args.json:
        atomic_write_bytes(Path(args.json), (json.dumps(result, indent=2) + "\n").encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
