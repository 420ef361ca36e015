"""Choosing among cross-validated recipes by a rule written before they ran.

The rule: the winner is the candidate with the highest pooled per-volume Dice among those that lose no more than
``max_slice_loss`` tumour-slice Dice to the baseline (today's recipe). Targets, when a protocol sets some, are
passed in and reported as met or missed; they never choose. A pure function of the pooled estimates
(``lggdemo-crossval --json``), so the rule can be checked on made-up numbers, and candidates scored on different
folds are refused, never compared. A protocol's own margin and targets live with the protocol
(``docs/experiments/selection-rule.txt``) and reach this module through ``lggdemo-crossval --compare``'s options.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lggdemo.evaluation.crossval import CrossValError
from lggdemo.metrics.bootstrap import mean_ci

#: The default margin: the baseline may be beaten on tumour-slice Dice by at most this much.
MAX_SLICE_LOSS = 0.005
#: What a target may be set on (``--target NAME=VALUE``): the three numbers each row reports.
TARGET_NAMES = ("per_volume_dice_mean", "tumour_slice_dice", "small_tumour_dice")
#: The tumour-area bin ``small_tumour_dice`` is measured on (true tumour under 256 px at 256²).
SMALL_BIN = "1-255 px"
_TOLERANCE = 1e-12  # a loss of exactly the margin, computed in floating point, still qualifies


@dataclass(frozen=True)
class CandidateRow:
    """One candidate's pooled numbers and where it stands under the rule."""

    name: str
    per_volume: float
    per_volume_ci: tuple[float, float] | None
    median: float | None
    tumour_slice: float
    slice_loss: float  # baseline's tumour-slice Dice minus this one's (positive: worse than the baseline)
    small_tumour: float | None  # pooled Dice of the SMALL_BIN slices
    small_tumour_n: int | None
    unet_minutes_per_fold: float | None
    eligible: bool  # loses no more than MAX_SLICE_LOSS tumour-slice Dice to the baseline
    #: Mean per-patient per-volume Dice gain over the baseline (the same patients, paired) and its bootstrap 95% CI:
    #: what the lever bought, with its uncertainty. Reported; the rule uses the pooled means above.
    gain: float | None = None
    gain_ci: tuple[float, float] | None = None

    def shortfalls(self, targets: Mapping[str, float]) -> dict[str, float | None]:
        """Each target's shortfall (0.0 when met; None when not measured); ``targets`` by name of TARGET_NAMES."""
        values = {"per_volume_dice_mean": self.per_volume, "tumour_slice_dice": self.tumour_slice,
                  "small_tumour_dice": self.small_tumour}
        unknown = set(targets) - set(values)
        if unknown:
            raise CrossValError(f"no such number to set a target on: {', '.join(sorted(unknown))} "
                                f"(choose among {', '.join(TARGET_NAMES)})")
        return {k: None if values[k] is None else max(0.0, t - values[k]) for k, t in targets.items()}


@dataclass(frozen=True)
class Selection:
    baseline: str
    winner: str
    rows: tuple[CandidateRow, ...]
    max_slice_loss: float = MAX_SLICE_LOSS
    targets: Mapping[str, float] = field(default_factory=dict)  # reported for each row, never used to choose

    @property
    def ships(self) -> bool:
        """A recipe other than the baseline ships only if it won: its CV beat today's recipe under the same folds."""
        return self.winner != self.baseline

    def table(self) -> str:
        """The comparison as a Markdown table, the rule's outcome under it."""
        lines = ["| candidate | per-volume Dice (95% CI) | paired gain (95% CI) | median | tumour-slice Dice | vs baseline "
                 "| <256 px (n) | U-Net min/fold | qualifies |", "|---|---|---|---|---|---|---|---|---|"]
        for r in self.rows:
            ci = f" ({r.per_volume_ci[0]:.3f}–{r.per_volume_ci[1]:.3f})" if r.per_volume_ci else ""
            small = f"{r.small_tumour:.3f} ({r.small_tumour_n})" if r.small_tumour is not None else "—"
            mins = f"{r.unet_minutes_per_fold:.1f}" if r.unet_minutes_per_fold is not None else "—"
            med = f"{r.median:.3f}" if r.median is not None else "—"
            name = f"**{r.name}**" if r.name == self.winner else r.name
            gain = "—" if r.gain is None or r.name == self.baseline else f"{r.gain:+.3f}" + (
                f" ({r.gain_ci[0]:+.3f} to {r.gain_ci[1]:+.3f})" if r.gain_ci else "")
            lines.append(f"| {name} | {r.per_volume:.3f}{ci} | {gain} | {med} | {r.tumour_slice:.3f} | {-r.slice_loss:+.3f} "
                         f"| {small} | {mins} | {'yes' if r.eligible else 'no'} |")
        verdict = (f"Winner: {self.winner} (highest pooled per-volume Dice among candidates losing at most "
                   f"{self.max_slice_loss} tumour-slice Dice to {self.baseline}); "
                   + ("it ships." if self.ships else "the baseline stays, nothing new ships."))
        return "\n".join([*lines, "", verdict])


def _metric(pooled: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    try:
        return pooled["metrics"][name]
    except (KeyError, TypeError):
        raise CrossValError(f"a pooled estimate without {name}") from None


def _per_patient(pooled: Mapping[str, Any]) -> dict[str, float]:
    return {str(p): float(d) for f in pooled.get("folds") or [] for p, d in (f.get("per_patient_dice") or {}).items()}


def _partition(pooled: Mapping[str, Any]) -> tuple[frozenset[str], ...]:
    return tuple(frozenset(f["val"]) for f in sorted(pooled.get("folds") or [], key=lambda f: f["fold"]))


def select_candidate(pooled: Mapping[str, Mapping[str, Any]], baseline: str,
                     max_slice_loss: float = MAX_SLICE_LOSS, targets: Mapping[str, float] | None = None) -> Selection:
    """Apply the rule to pooled estimates by candidate name (in the order to show them).

    Ties in per-volume Dice go to the baseline, then to the candidate listed first: a change has to earn its place.
    ``targets`` (name of TARGET_NAMES -> value) are only reported: :meth:`CandidateRow.shortfalls`.
    """
    targets = dict(targets or {})
    if set(targets) - set(TARGET_NAMES):
        raise CrossValError(f"targets can be set on {', '.join(TARGET_NAMES)} only, not on "
                            f"{', '.join(sorted(set(targets) - set(TARGET_NAMES)))}")
    if baseline not in pooled:
        raise CrossValError(f"the baseline {baseline!r} is not among the candidates ({', '.join(pooled)})")
    folds = {name: _partition(p) for name, p in pooled.items()}
    if any(f != folds[baseline] for f in folds.values()) or not folds[baseline]:
        raise CrossValError("the candidates were not scored on the same folds: their numbers are not comparable")
    rules = {p.get("postprocess") for p in pooled.values()}
    if len(rules) != 1:
        raise CrossValError(f"the candidates were scored with different post-processing ({sorted(map(str, rules))})")
    base_slice = float(_metric(pooled[baseline], "tumour_slice_dice")["value"])
    base_dice = _per_patient(pooled[baseline])
    rows = []
    for name, p in pooled.items():
        pv, ts = _metric(p, "per_volume_dice_mean"), float(_metric(p, "tumour_slice_dice")["value"])
        median = (p["metrics"].get("per_volume_dice_median") or {}).get("value")
        small = (p.get("tumour_slice_dice_by_area") or {}).get(SMALL_BIN)
        seconds = (p.get("timing") or {}).get("unet_seconds_mean")
        loss = base_slice - ts
        dice = _per_patient(p)
        diffs = [dice[k] - base_dice[k] for k in sorted(base_dice)] if base_dice and set(dice) == set(base_dice) else []
        rows.append(CandidateRow(name, float(pv["value"]), tuple(pv["ci95"]) if pv.get("ci95") else None,
                                 float(median) if median is not None else None, ts, loss,
                                 float(small["dice"]) if small else None, int(small["n"]) if small else None,
                                 seconds / 60 if seconds is not None else None, loss <= max_slice_loss + _TOLERANCE,
                                 sum(diffs) / len(diffs) if diffs else None, mean_ci(diffs) if diffs else None))
    order = {name: (name != baseline, i) for i, name in enumerate(pooled)}
    eligible = [r for r in rows if r.eligible]  # never empty: the baseline loses nothing to itself
    winner = min(eligible, key=lambda r: (-r.per_volume, order[r.name]))
    return Selection(baseline, winner.name, tuple(rows), max_slice_loss, targets)
