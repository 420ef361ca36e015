"""What the Predict page's AppTests share: an empty bundled folder, and the page on the phantoms with the tiny
weights active (slice mode, after its first run)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lggdemo.models import weights

PREDICT_PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "predict.py")
TIMEOUT = 180


@pytest.fixture()
def no_bundled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Whatever is in the project's weights/, these tests see an empty bundled folder."""
    empty = tmp_path / "bundled"
    empty.mkdir()
    monkeypatch.setattr(weights, "BUNDLED_DIR", empty)
    return empty


@pytest.fixture()
def predict_app(no_bundled: Path, tiny_weights: Path, synthetic_root: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    """Predict on the phantoms with the tiny weights active and an empty bundled folder."""
    monkeypatch.setenv("LGG_DATA_DIR", str(synthetic_root))
    weights.set_active(tiny_weights)
    at = AppTest.from_file(PREDICT_PAGE, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at
