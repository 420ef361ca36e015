"""``lggdemo-crossval``: pool fold runs, pool the grade's out-of-fold predictions, compare candidates.

    lggdemo-crossval FOLD... [--name C1] [--json FILE] [--record-in WEIGHTS]
    lggdemo-crossval --grade FOLD... [--json FILE] [--record-in WEIGHTS] [--n-boot 2000]
    lggdemo-crossval --compare POOLED.json... [--baseline C0] [--max-slice-loss 0.005] [--target NAME=VALUE...]
                     [--json FILE]

FOLD is a weights folder written by ``python -m lggdemo.train ... --fold I/K`` or its card file alone (the fold
cards kept in ``docs/experiments/``). The first form pools the U-Net's held-out scores
(:mod:`lggdemo.evaluation.crossval`), the second the grade model's out-of-fold P(G3) and the Platt scaling fitted on it
(:mod:`lggdemo.evaluation.grade_oof`), the third applies the selection rule to candidates' pooled estimates
(:mod:`lggdemo.evaluation.selection`). ``--record-in`` writes the estimate into a weights folder's card, refused unless
its model was trained by the folds' recipe. This module is the command line only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lggdemo._fs import atomic_write_bytes
from lggdemo.evaluation.crossval import CrossValError, pool_folds, record
from lggdemo.evaluation.grade_oof import pool_grade_folds, record_grade
from lggdemo.evaluation.selection import MAX_SLICE_LOSS, TARGET_NAMES, select_candidate
from lggdemo.models.weights import WeightsError, load_card


def _ci(m: dict[str, Any]) -> str:
    return f"  (95% CI {m['ci95'][0]:.3f}–{m['ci95'][1]:.3f})" if m.get("ci95") else ""


def print_pooled(pooled: dict[str, Any]) -> None:
    print(pooled["method"])
    print(f"post-processing: {pooled['postprocess']}")
    print("recipe: " + " -> ".join(str(s["preset"]) for s in pooled["recipe"]))
    for name, m in pooled["metrics"].items():
        print(f"{name}: {m['value']:.3f}{_ci(m)}  n={m['n']}")
    for area, b in (pooled.get("tumour_slice_dice_by_area") or {}).items():
        print(f"tumour-slice Dice, true tumour {area}: {b['dice']:.3f}  n={b['n']}")
    for f in pooled["folds"]:
        stages = " + ".join(f"{s['unet_seconds'] / 60:.1f} min at {s['images_per_second']:.1f} img/s"
                            if s["unet_seconds"] is not None and s["images_per_second"] is not None else "time not recorded"
                            for s in f["stages"])
        print(f"fold {f['fold']}: {len(f['val'])} held out, per-volume Dice "
              f"{np.mean(list(f['per_patient_dice'].values())):.3f}, tumour-slice {f['tumour_slice_dice']['value']:.3f}; "
              f"U-Net {stages}")


def print_grade(pooled: dict[str, Any]) -> None:
    oof, cal = pooled["out_of_fold"], pooled["calibration"]
    print(oof["method"])
    print(f"graded patients: {oof['n']} ({oof['n_g3']} grade III)")
    for label, key in (("model", "model"), ("age alone", "age_only"), ("model, Platt cross-fitted", "calibrated_cross_fitted")):
        r = oof[key]
        print(f"{label}: AUC {r['auc']['value']:.3f}{_ci(r['auc'])}, Brier {r['brier']['value']:.4f}, "
              f"log loss {r['log_loss']['value']:.4f}")
    if "base_rate_cross_fitted" in oof:
        b = oof["base_rate_cross_fitted"]
        print(f"base rate of each fold's training patients: Brier {b['brier']:.4f}, log loss {b['log_loss']:.4f}")
    print(f"Platt for the app: P(G3) = sigmoid({cal['a']:.4f} * logit + {cal['b']:.4f}), fitted on {cal['n']} patients")


def _target(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    try:
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE such as per_volume_dice_mean=0.85, got {text!r}") from None


def write_json(path: str, doc: dict[str, Any]) -> None:
    atomic_write_bytes(Path(path), (json.dumps(doc, indent=2) + "\n").encode())


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lggdemo-crossval", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", help="fold runs (weights folders or card files); with --compare, pooled JSONs")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--grade", action="store_true", help="pool the grade model's out-of-fold P(G3) and fit Platt")
    mode.add_argument("--compare", action="store_true", help="apply the selection rule to pooled estimates")
    ap.add_argument("--name", default=None, help="the candidate's name, kept in the pooled JSON (default: none)")
    ap.add_argument("--baseline", default=None, help="with --compare: the baseline candidate (default: the first)")
    ap.add_argument("--max-slice-loss", type=float, default=MAX_SLICE_LOSS,
                    help="with --compare: tumour-slice Dice a candidate may lose to the baseline and still qualify")
    ap.add_argument("--target", action="append", default=[], type=_target, metavar="NAME=VALUE",
                    help=f"with --compare: a target to report against, never to choose by ({', '.join(TARGET_NAMES)})")
    ap.add_argument("--record-in", default=None, help="weights folder whose card gets the estimate (same recipe only)")
    ap.add_argument("--json", default=None, help="also write the result as JSON here")
    ap.add_argument("--n-boot", type=int, default=2000, help="with --grade: bootstrap resamples per AUC interval")
    args = ap.parse_args(argv)
    try:
        if args.compare:
            pooled = {}
            for path in args.inputs:
                doc = json.loads(Path(path).read_text())
                pooled[str(doc.get("candidate") or Path(path).stem)] = doc
            selection = select_candidate(pooled, args.baseline or next(iter(pooled)), args.max_slice_loss,
                                         dict(args.target))
            print(selection.table())
            if args.json:
                rows = [{**dataclasses.asdict(r), "targets_shortfall": r.shortfalls(selection.targets)}
                        for r in selection.rows]
                write_json(args.json, {"baseline": selection.baseline, "winner": selection.winner,
                                       "ships": selection.ships, "max_slice_loss": selection.max_slice_loss,
                                       "targets": dict(selection.targets), "rows": rows})
            return 0
        cards = [load_card(Path(d)) for d in args.inputs]
        if args.grade:
            result = pool_grade_folds(cards, args.inputs, n_boot=args.n_boot)
            if args.record_in:
                record_grade(Path(args.record_in), result)
            print_grade(result)
        else:
            result = pool_folds(cards, args.inputs)
            if args.name:
                result = {"candidate": args.name, **result}
            if args.record_in:
                record(Path(args.record_in), result)
            print_pooled(result)
    except (CrossValError, WeightsError, OSError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
