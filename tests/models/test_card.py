"""ModelCard: the one reader of model cards -- the bundled card, older and odd cards, round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lggdemo.models import weights
from lggdemo.models.card import (
    HELD_OUT_KEYS,
    SCHEMA_VERSION,
    WITHHELD_OTHER_SPLIT,
    CardError,
    ModelCard,
    ModelSection,
    card_metric,
)

ARCHIVED_CARD = Path(__file__).resolve().parents[2] / "docs" / "experiments" / "bundled-2026-11-25-refine-s0-card.json"


def test_a_real_card_reads_with_its_metrics_per_model() -> None:
    """The bundled card until 2026-12-02 (a held-out split), archived with the experiments."""
    raw = json.loads(ARCHIVED_CARD.read_text())
    card = ModelCard.from_dict(raw)
    assert card.schema_version == 1 and card.version == raw["version"]
    assert set(card.metrics()) == {"segmentation", "grade"}  # per model, not at the top level
    assert card.segmentation.metric("per_volume_dice_mean") == raw["segmentation"]["metrics"]["per_volume_dice_mean"]["value"]
    assert card.file_sha256(weights.SEG_FILE) == raw["files"][weights.SEG_FILE]["sha256"]
    assert card.split.same_patients(raw["split"]["train"], raw["split"]["val"]) and card.split.seed == raw["split"]["seed"]
    assert card_metric(card, "grade", "auc") == card_metric(raw, "grade", "auc") is not None


def test_round_trip_keeps_every_key_and_stamps_the_schema(tmp_path: Path) -> None:
    raw = {"version": "v1", "custom": {"kept": [1, 2]}, "segmentation": {"metrics": {"dice": {"value": 0.5}}}}
    weights.write_card(tmp_path, raw)
    written = json.loads((tmp_path / weights.CARD_FILE).read_text())
    assert written == {"schema_version": SCHEMA_VERSION, **raw}
    assert weights.load_card(tmp_path).metric_values() == {"segmentation": {"dice": 0.5}}


@pytest.mark.parametrize("raw", [{}, {"segmentation": "junk", "split": [1], "files": None, "version": None},
                                 {"grade": {"metrics": {"auc": "high"}}, "split": {"train": None, "seed": "x"}}])
def test_odd_cards_read_as_empty_never_raise(raw: dict) -> None:
    card = ModelCard.from_dict(raw)
    assert card.metrics() == {} or card.metric_values() == {}
    assert card.segmentation.per_patient_dice == {} and card.split.train == () and card.file_sha256("x") is None
    assert card.grade.metric("auc") is None


def test_a_newer_or_broken_card_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CardError):
        ModelCard.from_dict([1, 2])
    (tmp_path / weights.CARD_FILE).write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(weights.WeightsError, match="newer"):
        weights.load_card(tmp_path)
    assert not weights.is_complete(tmp_path)


def test_sections_are_written_through_the_type_that_reads_them() -> None:
    """What the trainer writes: a trained section, its scores added, and a copy into another run that keeps its
    held-out numbers only on the same split and never its old pair's out-of-fold estimate."""
    measured = {"metrics": {"auc": {"value": 0.7, "ci95": [0.6, 0.8], "n": 20}}, "per_patient_p_g3": {"p1": 0.4},
                "labels": {"p1": 1}, "validation_masks": "predicted by the segmentation model"}
    trained = ModelSection.trained({"image_size": 64}, **measured, history=[{"epoch": 1}])
    assert trained.trained_in_this_run and trained.config == {"image_size": 64} and trained.metric("auc") == 0.7
    recorded = trained.updated(out_of_fold={"n": 20}, calibration={"a": 1.0, "b": 0.0})
    assert trained.data.get("out_of_fold") is None  # sections are values: updating makes a new one

    same = recorded.copied("/runs/a", same_split=True, fields={"validation_masks": "predicted by this run's U-Net"})
    assert same.held_out and same.metric("auc") == 0.7 and not same.trained_in_this_run
    assert same.data["copied_from"] == "/runs/a" and same.data["validation_masks"] == "predicted by this run's U-Net"
    assert "out_of_fold" not in same.data and "calibration" not in same.data

    other = recorded.copied("/runs/a", same_split=False, fields=measured)
    assert not other.held_out and other.data["held_out_metrics"] == WITHHELD_OTHER_SPLIT
    assert not set(HELD_OUT_KEYS) & set(other.data) and other.config == {"image_size": 64}
    assert trained.withheld("none: no validation patient").copied("/x", same_split=True).held_out is False

    card = ModelCard({"version": "v1", "segmentation": {"config": {}}, "split": {"train": ["p2"]}})
    written = card.with_model("segmentation", trained).with_model("grade", same)
    assert list(written.data) == ["version", "segmentation", "split", "grade"]  # a section keeps its place
    assert written.segmentation.metric("auc") == 0.7 and written.grade.data["copied_from"] == "/runs/a"
    assert card.segmentation.config == {}  # the card it came from is unchanged
    with pytest.raises(CardError, match="sections"):
        card.with_model("gradcam", trained)

