"""ModelCard: the one reader of model cards -- the bundled card, older and odd cards, round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lggdemo.models import weights
from lggdemo.models.card import SCHEMA_VERSION, CardError, ModelCard, card_metric

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
