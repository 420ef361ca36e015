"""What each reported metric means: the definitions written into every model card.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

DEFINITIONS = {
    "per_volume_dice_mean": "Mean over patients of the 3D Dice of each patient's stacked slices (Buda et al. 2019).",
    "per_volume_dice_median": "Median over patients of the per-patient 3D Dice.",
    "tumour_slice_dice": "Mean 2D Dice over slices whose ground-truth mask shows tumour.",
    "auc": "Per-patient ROC AUC of P(G3) against the recorded grade; 95% CI by bootstrap over patients.",
    "accuracy": "Per-patient accuracy of P(G3) >= 0.5.",
    "balanced_accuracy": "Per-patient mean of G2 and G3 recall at P(G3) >= 0.5.",
    "brier": "Mean squared error of per-patient P(G3) against the recorded grade (0.25 for a constant 0.5).",
    "log_loss": "Mean cross-entropy of per-patient P(G3) in nats (ln 2 = 0.693 for a constant 0.5).",
    "age_baseline_auc": "ROC AUC of a logistic regression on age alone, fitted on the training patients.",
}


@dataclass(frozen=True)
class Metric:
    value: float
    ci95: tuple[float, float] | None = None
    n: int = 0
    definition: str = ""

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["ci95"] = list(self.ci95) if self.ci95 else None
        return d
