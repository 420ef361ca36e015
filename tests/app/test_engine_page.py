"""The Predict page says which engine runs the models, and keeps working on PyTorch when ONNX Runtime is missing."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lggdemo.models import weights

PREDICT_PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "predict.py")
TIMEOUT = 180


def _captions(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("caption", "info") for e in getattr(at, kind))


def _page(tiny_weights: Path, synthetic_root: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("LGG_DATA_DIR", str(synthetic_root))
    monkeypatch.delenv("LGG_ENGINE", raising=False)
    weights.set_active(tiny_weights)
    at = AppTest.from_file(PREDICT_PAGE, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at


def test_caption_names_onnx_runtime_on_a_cpu(no_bundled: Path, tiny_weights: Path, synthetic_root: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    at = _page(tiny_weights, synthetic_root, monkeypatch)
    # The count is the engine's own (fixed when its sessions opened), so it is read back, not recomputed here:
    # another test in the same process may have changed torch's thread count since the predictor was cached.
    found = re.search(r"running on CPU, ONNX Runtime, (\d+) (threads?)\b", _captions(at))
    assert found, _captions(at)
    assert found.group(2) == ("thread" if found.group(1) == "1" else "threads")
    assert "PyTorch" not in _captions(at)


def test_without_onnxruntime_the_page_runs_on_torch_and_says_so(no_bundled: Path, tiny_weights: Path,
                                                                synthetic_root: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    at = _page(tiny_weights, synthetic_root, monkeypatch)
    text = _captions(at)
    assert "running on CPU, PyTorch" in text
    assert "ONNX Runtime is not installed" in text and "the models run on PyTorch instead" in text
    at.button(key="predict_example").click().run()  # and the page still predicts
    assert not at.exception, at.exception
    assert "Tumour area" in [m.label for m in at.metric]
    assert any("Layer explained: `decoder.blocks" in m.value for m in at.markdown)  # Grad-CAM too (in its details)
