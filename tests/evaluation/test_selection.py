"""The selection rule on made-up pooled estimates: highest per-volume Dice among candidates that lose at most a
margin (0.005 by default) of tumour-slice Dice to the baseline; targets, passed in, are reported, never used to choose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lggdemo.crossval import main
from lggdemo.evaluation.crossval import CrossValError
from lggdemo.evaluation.selection import select_candidate

FOLDS = [{"fold": 0, "val": ["a", "b"]}, {"fold": 1, "val": ["c", "d"]}]


def pooled(per_volume: float, tumour_slice: float, small: float | None = None, folds: list | None = None,
           rule: str = "3D") -> dict:
    return {"metrics": {"per_volume_dice_mean": {"value": per_volume, "ci95": [per_volume - 0.03, per_volume + 0.03],
                                                 "n": 88},
                        "per_volume_dice_median": {"value": per_volume + 0.02},
                        "tumour_slice_dice": {"value": tumour_slice, "n": 1100}},
            "tumour_slice_dice_by_area": {} if small is None else {"1-255 px": {"n": 120, "dice": small}},
            "timing": {"unet_seconds_mean": 900.0}, "postprocess": rule, "folds": folds or FOLDS}


def test_highest_per_volume_among_candidates_within_the_slice_margin() -> None:
    s = select_candidate({"C0": pooled(0.80, 0.770), "C1": pooled(0.84, 0.760),  # best per-volume, loses 0.010: out
                          "C2": pooled(0.83, 0.765), "C3": pooled(0.82, 0.790)}, "C0")  # C2 loses exactly 0.005: in
    assert s.winner == "C2" and s.ships
    assert [r.eligible for r in s.rows] == [True, False, True, True]
    assert s.rows[1].slice_loss == pytest.approx(0.010)


def test_the_baseline_stays_when_nothing_beats_it_and_ties_go_to_it() -> None:
    s = select_candidate({"C0": pooled(0.82, 0.78), "C1": pooled(0.82, 0.79), "C2": pooled(0.90, 0.70)}, "C0")
    assert s.winner == "C0" and not s.ships
    assert "the baseline stays" in s.table()


TARGETS = {"per_volume_dice_mean": 0.85, "tumour_slice_dice": 0.80, "small_tumour_dice": 0.55}


def test_targets_are_reported_not_used_to_choose() -> None:
    candidates = {"C0": pooled(0.80, 0.77, small=0.40), "C1": pooled(0.86, 0.81, small=0.60)}
    s = select_candidate(candidates, "C0", targets=TARGETS)
    c0, c1 = s.rows
    assert c0.shortfalls(s.targets) == pytest.approx({"per_volume_dice_mean": 0.05, "tumour_slice_dice": 0.03,
                                                      "small_tumour_dice": 0.15})
    assert c1.shortfalls(s.targets) == {"per_volume_dice_mean": 0.0, "tumour_slice_dice": 0.0, "small_tumour_dice": 0.0}
    assert select_candidate(candidates, "C0").winner == s.winner  # the same choice without any target
    assert select_candidate({"C0": pooled(0.80, 0.77), "C1": pooled(0.81, 0.77)}, "C0").rows[0].shortfalls(TARGETS)[
        "small_tumour_dice"] is None
    with pytest.raises(CrossValError, match="targets can be set on"):
        select_candidate(candidates, "C0", targets={"auc": 0.7})


def test_the_margin_is_a_parameter() -> None:
    candidates = {"C0": pooled(0.80, 0.770), "C1": pooled(0.84, 0.760)}  # C1 loses 0.010 tumour-slice Dice
    assert select_candidate(candidates, "C0").winner == "C0"
    assert select_candidate(candidates, "C0", max_slice_loss=0.01).winner == "C1"


def test_each_candidates_gain_is_paired_by_patient_with_an_interval() -> None:
    def scored(dice: dict[str, float]) -> list[dict]:
        return [{**f, "per_patient_dice": {p: dice[p] for p in f["val"]}} for f in FOLDS]

    base, better = {"a": 0.5, "b": 0.9, "c": 0.7, "d": 0.8}, {"a": 0.7, "b": 0.9, "c": 0.8, "d": 0.8}
    s = select_candidate({"C0": pooled(0.725, 0.77, folds=scored(base)), "C1": pooled(0.8, 0.77, folds=scored(better))},
                         "C0")
    c0, c1 = s.rows
    assert c0.gain == pytest.approx(0.0) and c1.gain == pytest.approx(0.075)  # (0.2 + 0 + 0.1 + 0) / 4
    assert c1.gain_ci is not None and 0.0 <= c1.gain_ci[0] < 0.075 < c1.gain_ci[1] <= 0.2
    assert "| **C1** | 0.800 (0.770–0.830) | +0.075 (" in s.table()
    assert select_candidate({"C0": pooled(0.8, 0.7), "C1": pooled(0.9, 0.8)}, "C0").rows[1].gain is None


def test_candidates_on_other_folds_or_rules_are_not_compared() -> None:
    other = [{"fold": 0, "val": ["a", "c"]}, {"fold": 1, "val": ["b", "d"]}]
    with pytest.raises(CrossValError, match="same folds"):
        select_candidate({"C0": pooled(0.8, 0.7), "C1": pooled(0.9, 0.8, folds=other)}, "C0")
    with pytest.raises(CrossValError, match="post-processing"):
        select_candidate({"C0": pooled(0.8, 0.7), "C1": pooled(0.9, 0.8, rule="2D")}, "C0")
    with pytest.raises(CrossValError, match="baseline"):
        select_candidate({"C1": pooled(0.9, 0.8)}, "C0")


def test_compare_command_reads_pooled_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = []
    for name, doc in {"C0": pooled(0.80, 0.77), "C1": pooled(0.83, 0.772)}.items():
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(doc))
    assert main(["--compare", *map(str, paths), "--target", "per_volume_dice_mean=0.85", "--json",
                 str(tmp_path / "rule.json")]) == 0
    out = json.loads((tmp_path / "rule.json").read_text())
    assert out["winner"] == "C1" and out["ships"] and out["baseline"] == "C0"
    assert out["targets"] == {"per_volume_dice_mean": 0.85}
    assert [r["targets_shortfall"]["per_volume_dice_mean"] for r in out["rows"]] == pytest.approx([0.05, 0.02])
    assert "| **C1** | 0.830" in capsys.readouterr().out
