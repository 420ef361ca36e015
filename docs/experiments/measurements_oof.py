"""Out-of-fold agreement of the clinical measurements: each fold model scored on its own held-out patients, pooled.

    python docs/experiments/measurements_oof.py EVAL.json... [--cards CARD.json...] [--data DIR]
           [--out docs/experiments/measurements-oof]

Each EVAL.json is ``python -m lggdemo.evaluate --weights FOLD --split val --spacing ... --json EVAL.json``
of one fold model (``--split val``: the patients its card holds out). This script refuses a file that scored a
patient outside that fold's held-out list or one its model trained on, pools the per-patient rows and computes
the cohort's agreement with the evaluator's own function (``lggdemo.evaluation.scoring.measurement_cohort``), and
writes ``OUT.json`` and ``OUT.md``. Besides the numbers under the assumed spacing it reports what does not depend
on it (volumes in voxels, products in px²) and how measurability moves with the assumed pixel size.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from lggdemo._fs import atomic_write_bytes
from lggdemo.evaluation.scoring import measurement_cohort
from lggdemo.measure import MEASURABLE_MM
from lggdemo.metrics.agreement import bland_altman

PIXEL_SENSITIVITY_MM = (0.8, 0.94, 1.1)


def load_fold(eval_path: Path, card_path: Path) -> dict[str, Any]:
    doc = json.loads(eval_path.read_text())
    card = json.loads(card_path.read_text())
    split = card["split"]
    rows = doc["measurements"]["per_patient"]
    held_out, trained = set(split["val"]), set(split["train"])
    if set(rows) != held_out:
        raise SystemExit(f"{eval_path}: scored {sorted(set(rows) ^ held_out)} outside/missing from the fold's held-out list")
    if set(rows) & trained or doc.get("trained_on"):
        raise SystemExit(f"{eval_path}: scored patients its model trained on")
    return {"fold": split["fold"], "folds": split["folds"], "weights": doc["weights"], "card_version": doc.get("card_version"),
            "engine": doc.get("engine"), "spacing_mm": doc["measurements"]["spacing_mm"], "rows": rows,
            "dice": doc["segmentation"]["per_patient_dice"]}


def measurable_at(row: dict[str, Any], scale: float) -> bool:
    """RANO-LGG measurability if the pixels were ``scale`` times the assumed size (diameters are in-plane)."""
    a, b = row["longest_mm"], row["perpendicular_mm"]
    return a is not None and b is not None and min(a, b) * scale >= MEASURABLE_MM


def scale_free(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Bland-Altman in voxels and px², which no assumed spacing enters (square pixels assumed)."""
    r = list(rows.values())
    vol = bland_altman([x["prediction"]["volume_voxels"] for x in r], [x["truth"]["volume_voxels"] for x in r])

    def product(m: dict[str, Any]) -> float:
        return float(m["product_px2"] or 0.0) if m["volume_voxels"] else 0.0

    prod = bland_altman([product(x["prediction"]) for x in r], [product(x["truth"]) for x in r])
    return {"volume_voxels": vol.to_dict() if vol else None, "product_px2": prod.to_dict() if prod else None}


def sensitivity(rows: dict[str, dict[str, Any]], assumed_px: float) -> dict[str, Any]:
    out = {}
    for px in PIXEL_SENSITIVITY_MM:
        s = px / assumed_px
        pairs = [(measurable_at(x["prediction"], s), measurable_at(x["truth"], s)) for x in rows.values()]
        out[f"{px:g} mm"] = {"agreement_rate": float(np.mean([p == t for p, t in pairs])),
                             "truth_measurable": sum(t for _, t in pairs), "model_measurable": sum(p for p, _ in pairs)}
    return out


def laterality_table(rows: dict[str, dict[str, Any]], data_csv: Path | None) -> dict[str, Any] | None:
    """The true masks' laterality against data.csv's ``laterality`` code (codes undocumented: a plausibility check
    of the display layout's right/left, not a validation)."""
    if data_csv is None or not data_csv.is_file():
        return None
    import pandas as pd

    codes = pd.read_csv(data_csv).set_index("Patient")["laterality"]
    table: dict[str, dict[str, int]] = {}
    for pid, row in rows.items():
        key = "_".join(pid.split("_")[:3])
        code = codes.get(key)
        name = "missing" if code is None or pd.isna(code) else str(int(code))
        side = row["truth"]["laterality"]
        table.setdefault(name, {}).setdefault(side, 0)
        table[name][side] += 1
    return table


def discordant(rows: dict[str, dict[str, Any]], data_csv: Path | None) -> list[str]:
    """Patients whose true mask lies on one side while data.csv's code (1 left, 3 right, if read so) says the other."""
    if data_csv is None or not data_csv.is_file():
        return []
    import pandas as pd

    codes = pd.read_csv(data_csv).set_index("Patient")["laterality"]
    out = []
    for pid, row in rows.items():
        code = codes.get("_".join(pid.split("_")[:3]))
        side = row["truth"]["laterality"]
        if (code == 1 and side == "right") or (code == 3 and side == "left"):
            out.append(f"{pid} (code {int(code)}, mask {side})")
    return out


def _fmt(v: float | None, nd: int = 1, unit: str = "") -> str:
    return "n/a" if v is None else f"{v:.{nd}f}{unit}"


def markdown(doc: dict[str, Any]) -> str:
    c, a = doc["pooled"], doc["assumption"]
    u = c["units"]
    lines = ["# Out-of-fold agreement of the clinical measurements (issue 30)", "",
             doc["method"], "",
             f"**Assumed voxel size** (kaggle_3m stores none): {a['spacing_mm']} mm (slice, row, column). {a['why']}", "",
             "| fold | model | held-out patients | per-volume Dice (mean) | volume median abs error "
             "| product median abs error | measurable agreement |",
             "|---|---|---|---|---|---|---|"]
    for f in doc["folds"]:
        fc = f["cohort"]
        lines.append(f"| {f['fold']} | {f['card_version']} | {f['n']} | {f['dice_mean']:.3f} | "
                     f"{_fmt(fc['volume']['median_abs_pct_error'], 1, '%')} | "
                     f"{_fmt(fc['product']['median_abs_pct_error'], 1, '%')} | "
                     f"{_fmt(100 * fc['measurable']['agreement_rate'], 0, '%')} |")
    vol, prod, meas = c["volume"], c["product"], c["measurable"]
    lines += ["", f"## Pooled over {c['n']} patients, each scored once by the fold model that never trained on it", "",
              "| | median abs % error | Bland-Altman bias (model - truth) | 95% limits of agreement | n |",
              "|---|---|---|---|---|"]
    for name, r, unit in (("volume", vol, u["volume"]), ("bidimensional product", prod, u["product"])):
        ba = r["bland_altman"]
        lines.append(f"| {name} | {_fmt(r['median_abs_pct_error'], 1, '%')} | {ba['bias']:+.2f} {unit} | "
                     f"{ba['loa_low']:+.2f} to {ba['loa_high']:+.2f} {unit} | {ba['n']} |")
    sf = doc["scale_free"]
    lines += ["", "Without any assumed size (voxels of the 256² slices; px² of one slice): volume bias "
              f"{sf['volume_voxels']['bias']:+.0f} voxels (limits {sf['volume_voxels']['loa_low']:+.0f} to "
              f"{sf['volume_voxels']['loa_high']:+.0f}); product bias {sf['product_px2']['bias']:+.0f} px² (limits "
              f"{sf['product_px2']['loa_low']:+.0f} to {sf['product_px2']['loa_high']:+.0f}). The % errors are the same "
              "at any voxel size (ratios).", "",
              f"**Measurable by RANO-LGG** (both diameters >= 10 mm): model and truth agree on "
              f"{100 * meas['agreement_rate']:.0f}% of {meas['n']} (both {meas['both']}, neither {meas['neither']}, "
              f"model only {meas['model_only']}, truth only {meas['truth_only']}). With other pixel sizes: "
              + "; ".join(f"{k}: {100 * v['agreement_rate']:.0f}% (truth measurable {v['truth_measurable']})"
                          for k, v in doc["measurable_by_pixel_size"].items()) + "."
              + (" Every true lesion here is measurable at all three sizes, so this rate could hardly fail: it says the "
                 "model never shrinks a measurable lesion below 10 mm, not how it does near the edge (the rule itself "
                 "is tested at the edge in tests/measure/test_measure_diameters.py)."
                 if all(v["truth_measurable"] == meas["n"] for v in doc["measurable_by_pixel_size"].values()) else ""),
              "",
              "## Surface metrics (mean and median over patients, bootstrap 95% CIs, 2000 resamples)", "",
              "| metric | mean (95% CI) | median (95% CI) | n |", "|---|---|---|---|"]
    for key, label in (("dice", "Dice"), ("hd95_mm", "HD95 (mm)"), ("assd_mm", "ASSD (mm)"),
                       ("surface_dice_1mm", "surface Dice at 1 mm"), ("surface_dice_2mm", "surface Dice at 2 mm")):
        r = c["surface"][key]
        ci = (lambda x: "n/a" if x is None else f"{x[0]:.3f}–{x[1]:.3f}")  # noqa: E731
        lines.append(f"| {label} | {r['mean']:.3f} ({ci(r['mean_ci95'])}) | {r['median']:.3f} ({ci(r['median_ci95'])}) "
                     f"| {r['n']} |")
    lines += ["", f"HD95 and ASSD are undefined (and left out) for {c['surface']['undefined_distance']} patient(s) "
              "with an empty predicted mask. Distances and surface Dice depend on the assumed voxel size.", ""]
    if doc.get("laterality_vs_data_csv"):
        odd = doc["laterality_discordant"]
        lines += ["## Laterality: a check of the display layout's right and left", "",
                  "The true masks' laterality (columns run the patient's right -> left) against data.csv's "
                  "`laterality` code, which the dataset does not document (TCGA's values sorted alphabetically would be "
                  "1 = left, 2 = midline, 3 = right): " + json.dumps(doc["laterality_vs_data_csv"]) + ". "
                  "Code 1 goes with left and 3 with right almost always, so the layout's sides agree with the clinical "
                  "record; one-sided masks on the other side: " + (", ".join(odd) if odd else "none") + ".", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("evals", nargs="+", type=Path)
    ap.add_argument("--cards", nargs="*", type=Path, default=None,
                    help="each fold's model card (default: model_card.json beside the weights each EVAL names)")
    ap.add_argument("--data", type=Path, default=None, help="the kaggle_3m folder (for data.csv's laterality code)")
    ap.add_argument("--why", default="", help="the justification of the assumed spacing, written into the report")
    ap.add_argument("--out", type=Path, default=Path("docs/experiments/measurements-oof"))
    args = ap.parse_args(argv)
    cards = args.cards or [Path(json.loads(p.read_text())["weights"]) / "model_card.json" for p in args.evals]
    folds = sorted((load_fold(e, c) for e, c in zip(args.evals, cards)), key=lambda f: f["fold"])
    if len({f["fold"] for f in folds}) != len(folds) or len({tuple(f["spacing_mm"] or ()) for f in folds}) != 1:
        print("error: repeated folds, or folds scored at different spacings", file=sys.stderr)
        return 2
    pooled_rows = {p: r for f in folds for p, r in f["rows"].items()}
    missing = sorted(set(range(folds[0]["folds"])) - {f["fold"] for f in folds})
    spacing = folds[0]["spacing_mm"]
    doc: dict[str, Any] = {
        "method": (f"{folds[0]['folds']}-fold cross-validation of the bundled recipe (C1): fold model I scored with "
                   "`python -m lggdemo.evaluate --weights /work/folds/C1-fI-refine --split val "
                   f"--spacing {','.join(map(str, spacing))}` on its own held-out patients only, masks as the app "
                   "shows them; rows pooled; folds present: " + ", ".join(str(f["fold"]) for f in folds)
                   + (f" (fold(s) {', '.join(map(str, missing))} missing: no model of them to score, so their "
                      "held-out patients are not in these figures)" if missing else "")),
        "assumption": {"spacing_mm": spacing, "why": args.why},
        "folds": [{"fold": f["fold"], "weights": f["weights"], "card_version": f["card_version"], "engine": f["engine"],
                   "n": len(f["rows"]), "dice_mean": float(np.mean(list(f["dice"].values()))),
                   "cohort": measurement_cohort(f["rows"])} for f in folds],
        "pooled": measurement_cohort(pooled_rows),
        "scale_free": scale_free(pooled_rows),
        "measurable_by_pixel_size": sensitivity(pooled_rows, float(spacing[1])),
        "laterality_vs_data_csv": laterality_table(pooled_rows, args.data / "data.csv" if args.data else None),
        "laterality_discordant": discordant(pooled_rows, args.data / "data.csv" if args.data else None),
        "per_patient": {p: {"fold": f["fold"], **r} for f in folds for p, r in f["rows"].items()},
    }
    atomic_write_bytes(args.out.with_suffix(".json"), (json.dumps(doc, indent=1) + "\n").encode())
    atomic_write_bytes(args.out.with_suffix(".md"), (markdown(doc) + "\n").encode())
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
