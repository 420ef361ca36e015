"""The measurements behind the comparison's two decisions (rules in ``docs/experiments/longitudinal-rule.md``):

``threshold``: same-patient pairs (synthetic follow-ups) against different-patient pairs -> the NMI below which a
pair is refused or flagged (``register.NMI_REFUSE_BELOW`` / ``NMI_FLAG_BELOW``).

``change``: synthetic follow-ups of known growth (0.8, 1.0, 1.25, 1.5) of out-of-fold patients, segmented by the
fold model that never saw them -> the change-measurement error per factor, the registration's accuracy at the
tumour, and the error model the app uses (``error_model.json`` beside this module).

    python -m lggdemo.longitudinal.experiment change --data DATA/kaggle_3m --weights FOLD_WEIGHTS --out OUT

Each pair is appended to ``OUT.jsonl`` as it finishes, so a killed run resumes where it stopped (background-
friendly: run it under ``nice``). ``OUT.json`` (the summary) is rewritten at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lggdemo._fs import atomic_write_bytes
from lggdemo.longitudinal.pipeline import compare_masks
from lggdemo.longitudinal.register import RegistrationConfig, register, registration_spacing
from lggdemo.longitudinal.synthetic import make_follow_up, mask_points, random_motion, transform_error
from lggdemo.patient.volume import Volume

FACTORS = (0.8, 1.0, 1.25, 1.5)
#: Patients the registration settings were tried on while writing the code: never scored here.
TUNING_PATIENTS = ("TCGA_CS_4941_19960909", "TCGA_CS_4942_19970222", "TCGA_CS_4944_20010208")
CONFIG = RegistrationConfig(threads=1)


def _done(out: Path) -> dict[str, dict[str, Any]]:
    """Every finished pair of a run: ``OUT.jsonl`` and its shards' ``OUT.shard*.jsonl``."""
    rows: dict[str, dict[str, Any]] = {}
    for path in sorted(out.parent.glob(out.name + "*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:  # a line cut by a kill: redone
                continue
            rows[row["key"]] = row
    return rows


def _jsonl(out: Path, shard: tuple[int, int] | None) -> Path:
    return out.with_name(out.name + (f".shard{shard[0]}" if shard else "") + ".jsonl")


def _append(path: Path, row: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


def held_out(weights_or_card: Path) -> list[str]:
    """The held-out patients of a fold model (its folder, or its card's JSON file), less the tuning patients."""
    path = weights_or_card / "model_card.json" if weights_or_card.is_dir() else weights_or_card
    card = json.loads(path.read_text())
    return [p for p in card["split"]["val"] if p not in TUNING_PATIENTS]


def _volume(index: Any, pid: str) -> Volume:
    from lggdemo.patient.readers.kaggle import index_volume

    return index_volume(index, pid)


def _similarity_row(reg: Any) -> dict[str, Any]:
    return {"nmi_before": reg.before.nmi, "nmi_after": reg.after.nmi, "mattes_after": reg.after.mattes_mi,
            "corr_after": reg.after.correlation, "verdict": reg.verdict}


def run_threshold(index: Any, patients: Sequence[str], out: Path, n: int = 20) -> dict[str, Any]:
    """Rule section 1: same-patient (synthetic, harsh) vs different-patient NMI after registration."""
    jsonl = _jsonl(out, None)
    done = _done(out)
    pids = list(patients)[:n]
    for i, pid in enumerate(pids):
        for kind in ("same", "different"):
            key = f"{kind}:{pid}"
            if key in done:
                continue
            t0 = time.time()
            base = _volume(index, pid)
            if kind == "same":
                rng = np.random.default_rng(1000 + i)
                rot, shift = random_motion(rng)
                fu = make_follow_up(base, rotation_deg=rot, translation_mm=shift, growth=FACTORS[i % len(FACTORS)],
                                    noise_sd=6.0, bias=0.15, seed=1000 + i).volume
                other = pid
            else:
                other = pids[(i + 1) % len(pids)]
                fu = _volume(index, other)
            reg = register(base, fu, CONFIG, refuse=False)
            row = {"key": key, "kind": kind, "baseline": pid, "followup": other, **_similarity_row(reg),
                   "seconds": round(time.time() - t0, 1)}
            _append(jsonl, row)
            done[key] = row
            print(json.dumps(row), file=sys.stderr, flush=True)
    rows = [done[k] for k in sorted(done)]
    same = [r["nmi_after"] for r in rows if r["kind"] == "same"]
    diff = [r["nmi_after"] for r in rows if r["kind"] == "different"]
    lo_same, hi_diff = min(same), max(diff)
    if hi_diff < lo_same:
        refuse, flag, how = (hi_diff + lo_same) / 2, lo_same, "separated"
        caught = 1.0
    else:
        refuse, flag, how = lo_same, hi_diff, "overlapping"
        caught = float(np.mean([d < refuse for d in diff]))
    summary = {"rule": "docs/experiments/longitudinal-rule.md section 1", "n_same": len(same), "n_different": len(diff),
               "same_nmi": _stats(same), "different_nmi": _stats(diff), "distributions": how,
               "refuse_below": math.floor(refuse * 1000) / 1000, "flag_below": math.floor(flag * 1000) / 1000,
               "different_pairs_refused_fraction": caught, "pairs": rows}
    atomic_write_bytes(out.with_suffix(".json"), (json.dumps(summary, indent=2) + "\n").encode())
    return summary


def run_change(index: Any, weights: Path, out: Path, patients: Sequence[str] | None = None,
               shard: tuple[int, int] | None = None) -> dict[str, Any]:
    """Rule section 2: model-measured vs truth change per growth factor, out of fold, and the registration error.

    ``shard`` (i, n): take every n-th patient from the i-th, into ``OUT.shard{i}.jsonl`` (parallel processes);
    the summary is written from every shard's rows by whichever finishes (or by ``summarise``)."""
    from lggdemo.inference.predictor import Predictor
    from lggdemo.inference.wholepatient import predict_volume

    predictor = Predictor.from_directory(weights, "cpu")
    pids = list(patients) if patients is not None else held_out(weights)
    allowed = set(held_out(weights))
    if any(p not in allowed for p in pids):
        raise SystemExit("refused: a patient outside this model's held-out list would be scored by a model that "
                         "trained on it")
    jsonl = _jsonl(out, shard)
    done = _done(out)
    for i, pid in enumerate(pids):
        if shard is not None and i % shard[1] != shard[0]:
            continue
        if all(f"{pid}:{f}" in done for f in FACTORS):
            continue
        base = _volume(index, pid)
        spacing, _ = registration_spacing(base)
        base_pred = predict_volume(predictor, base, None)
        rot, shift = random_motion(np.random.default_rng(2000 + i))
        for factor in FACTORS:
            key = f"{pid}:{factor}"
            if key in done:
                continue
            t0 = time.time()
            syn = make_follow_up(base, rotation_deg=rot, translation_mm=shift, growth=factor, noise_sd=4.0, bias=0.1,
                                 seed=2000 + i)
            fu = syn.volume
            reg = register(base, fu, CONFIG, refuse=False)
            err = transform_error(reg.matrix, syn.matrix, mask_points(base.truth, spacing))
            fu_pred = predict_volume(predictor, fu, None)
            model = compare_masks(base, fu, reg, base_pred.mask, fu_pred.mask,
                                  baseline_probability=base_pred.probability.astype(np.float32),
                                  followup_probability=fu_pred.probability.astype(np.float32))
            truth = compare_masks(base, fu, reg, base.truth, fu.truth, followup_on_baseline=model.followup_on_baseline)
            tm, tt = model.table, truth.table
            row = {"key": key, "patient": pid, "factor": factor, "rotation_deg": list(rot), "translation_mm": list(shift),
                   "reg_rotation_error_deg": err.rotation_deg, "reg_mean_mm": err.mean_mm, "reg_max_mm": err.max_mm,
                   **_similarity_row(reg),
                   "truth_native_ratio": float(fu.truth.sum() / base.truth.sum()),
                   "truth_volume_pct": tt.volume_change_pct, "truth_product_pct": tt.product_change_pct,
                   "model_volume_pct": tm.volume_change_pct, "model_product_pct": tm.product_change_pct,
                   "truth_rano_lgg": tt.rano_lgg.category, "model_rano_lgg": tm.rano_lgg.category,
                   "truth_rano2": tt.rano2.category, "model_rano2": tm.rano2.category,
                   "baseline_voxels_truth": int(base.truth.sum()), "baseline_voxels_model": int(base_pred.mask.sum()),
                   "ranges_beyond": tm.volume_verdict.beyond, "seconds": round(time.time() - t0, 1)}
            _append(jsonl, row)
            done[key] = row
            print(json.dumps(row), file=sys.stderr, flush=True)
    return summarise_change(list(_done(out).values()), out, weights)


def _stats(values: Sequence[float]) -> dict[str, float | int | None]:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if not len(v):
        return {"n": 0}
    return {"n": int(len(v)), "mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "median_abs": float(np.median(np.abs(v))), "p2.5": float(np.percentile(v, 2.5)),
            "p97.5": float(np.percentile(v, 97.5)), "min": float(v.min()), "max": float(v.max())}


def _log_error(model_pct: float | None, truth_pct: float | None) -> float | None:
    if model_pct is None or truth_pct is None or model_pct <= -100 or truth_pct <= -100:
        return None
    return math.log1p(model_pct / 100.0) - math.log1p(truth_pct / 100.0)


def summarise_change(rows: list[dict[str, Any]], out: Path, weights: Path) -> dict[str, Any]:
    per_factor = {}
    for factor in FACTORS:
        rs = [r for r in rows if r["factor"] == factor]
        if not rs:
            continue

        def diff(a: str, b: str, rs: list[dict[str, Any]] = rs) -> list[float]:
            return [r[a] - r[b] for r in rs if r[a] is not None and r[b] is not None]

        per_factor[str(factor)] = {
            "n": len(rs), "intended_pct": 100.0 * (factor - 1.0),
            "truth_volume_pct": _stats([r["truth_volume_pct"] for r in rs]),
            "truth_vs_intended_pct": _stats([r["truth_volume_pct"] - 100.0 * (factor - 1.0) for r in rs]),
            "truth_registered_vs_native_pct": _stats([r["truth_volume_pct"] - 100.0 * (r["truth_native_ratio"] - 1)
                                                      for r in rs]),
            "volume_error_pct": _stats(diff("model_volume_pct", "truth_volume_pct")),
            "product_error_pct": _stats(diff("model_product_pct", "truth_product_pct")),
            "rano_lgg_agreement": float(np.mean([r["truth_rano_lgg"] == r["model_rano_lgg"] for r in rs])),
            "rano2_agreement": float(np.mean([r["truth_rano2"] == r["model_rano2"] for r in rs])),
            "model_rano2": {c: sum(r["model_rano2"] == c for r in rs) for c in {r["model_rano2"] for r in rs}},
        }
    reg = {"rotation_error_deg": _stats([r["reg_rotation_error_deg"] for r in rows]),
           "mean_mm": _stats([r["reg_mean_mm"] for r in rows]), "max_mm": _stats([r["reg_max_mm"] for r in rows]),
           "within_1mm_1deg": float(np.mean([r["reg_max_mm"] <= 1.0 and r["reg_rotation_error_deg"] <= 1.0
                                             for r in rows])),
           "verdicts": {v: sum(r["verdict"] == v for r in rows) for v in {r["verdict"] for r in rows}}}
    vol_log = [e for e in (_log_error(r["model_volume_pct"], r["truth_volume_pct"]) for r in rows) if e is not None]
    prod_log = [e for e in (_log_error(r["model_product_pct"], r["truth_product_pct"]) for r in rows) if e is not None]
    error_model = {"volume_log_limits": [float(np.percentile(vol_log, 2.5)), float(np.percentile(vol_log, 97.5))],
                   "product_log_limits": [float(np.percentile(prod_log, 2.5)), float(np.percentile(prod_log, 97.5))],
                   "source": f"docs/experiments/{out.name}.md", "n": len(vol_log),
                   "weights": str(weights.name), "rule": "docs/experiments/longitudinal-rule.md section 2"} \
        if vol_log and prod_log else None
    summary = {"rule": "docs/experiments/longitudinal-rule.md section 2", "weights": str(weights),
               "patients": sorted({r["patient"] for r in rows}), "n_pairs": len(rows), "factors": per_factor,
               "registration": reg, "error_model": error_model, "pairs": sorted(rows, key=lambda r: r["key"])}
    atomic_write_bytes(out.with_suffix(".json"), (json.dumps(summary, indent=2) + "\n").encode())
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    import lggdemo  # noqa: F401

    ap = argparse.ArgumentParser(prog="python -m lggdemo.longitudinal.experiment", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("threshold", "change", "summarise"))
    ap.add_argument("--data", type=Path, required=True, help="a kaggle_3m folder")
    ap.add_argument("--weights", type=Path, required=True,
                    help="a fold model's weights folder (its card's split.val are scored); for threshold, its card file "
                         "is enough (no model runs)")
    ap.add_argument("--out", type=Path, required=True, help="OUT.json / OUT.jsonl are written")
    ap.add_argument("--patients", type=int, default=None, help="at most this many held-out patients (list order)")
    ap.add_argument("--shard", default=None, help="change: I/N, every N-th patient from the I-th (parallel runs)")
    args = ap.parse_args(argv)

    from lggdemo.data.kaggle import scan_dataset

    index = scan_dataset(args.data)
    pids = held_out(args.weights)
    if args.patients:
        pids = pids[: args.patients]
    if args.what == "threshold":
        summary = run_threshold(index, pids, args.out, n=len(pids))
        print(json.dumps({k: v for k, v in summary.items() if k != "pairs"}, indent=2))
    elif args.what == "summarise":
        summary = summarise_change(list(_done(args.out).values()), args.out, args.weights)
        print(json.dumps({k: v for k, v in summary.items() if k != "pairs"}, indent=2))
    else:
        shard = tuple(int(v) for v in args.shard.split("/")) if args.shard else None
        summary = run_change(index, args.weights, args.out, pids, shard)  # type: ignore[arg-type]
        print(json.dumps({k: v for k, v in summary.items() if k != "pairs"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
