"""Downloads that say what they hold, slice mode under AppTest: before a correction one set of reports (the
model's); after a stroke a second set, the corrected mask's, whose stated area is the corrected one. (The whole
patient's JSON against the shown corrected volume is checked in a real browser: tests/e2e.)"""

from __future__ import annotations

import re
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from lggdemo.ui.predict import correct

#: A drag across the middle of the 512² canvas with a radius-4 brush (16 canvas px wide).
STROKE = {"objects": [{"type": "Path", "strokeWidth": 16, "path": [["M", 96, 256], ["L", 416, 256]]}]}


def labels(at: AppTest) -> list[str]:
    return [b.label for b in at.get("download_button")]  # type: ignore[attr-defined]


def test_a_stroke_adds_the_corrected_reports_beside_the_models(predict_app: AppTest,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    pending: list[dict[str, Any]] = []
    monkeypatch.setattr(correct, "_canvas", lambda *_args: pending.pop() if pending else None)
    at = predict_app
    at.button(key="predict_example").click().run()
    assert not at.exception, at.exception
    assert {"Download report (JSON)", "Download report (CSV)"} <= set(labels(at))
    assert not any("corrected report" in label for label in labels(at))

    at.toggle(key="predict_correct_open").set_value(True).run()
    pending.append(STROKE)
    at.run()
    assert not at.exception, at.exception
    corrected_area = int(re.match(r"(\d+) px", next(m.value for m in at.metric
                                                     if m.label == "Tumour area (corrected)")).group(1))
    assert {"Download corrected report (JSON)", "Download corrected report (CSV)", "Download report (JSON)"} <= set(
        labels(at))
    stated = [m.value for m in at.markdown if m.value.startswith("**The corrected mask**")]
    assert stated, [m.value for m in at.markdown][:20]
    total = int(re.search(r"tumour area over the slices (\d+) px", stated[0]).group(1))  # type: ignore[union-attr]
    model_total = int(re.search(r"tumour area over the slices (\d+) px", next(  # type: ignore[union-attr]
        m.value for m in at.markdown if m.value.startswith("**The model's mask**"))).group(1))
    model_area = int(re.search(r"vs the model's (\d+) px", next(m.delta for m in at.metric  # type: ignore[union-attr]
                                                                 if m.label == "Tumour area (corrected)")).group(1))
    assert total - model_total == corrected_area - model_area != 0
